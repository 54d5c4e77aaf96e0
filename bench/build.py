#!/usr/bin/env python3
"""Build and boot benchmark: prints a table of wall time, peak RSS, image size and boot time.

    python3 bench/build.py [--rounds 3] [--boot] [--chroot DIR [--make-chroot]] [--baseline IMG]

rdforge cold (empty cache) and warm builds are always measured. With --chroot DIR (a trixie
tree with initramfs-tools and dracut installed, e.g. made by
`mmdebstrap --include=linux-image-amd64,initramfs-tools,dracut trixie DIR`), mkinitramfs and
dracut are run inside it on the same kernel, in the same run, and reported as ratios.
--make-chroot creates DIR first with mmdebstrap from the host's apt sources (trixie and
trixie-security, so the kernel is the one rdforge picks). With
--boot every image is booted (interleaved rounds, medians) on the same kernel and test root,
with the same kernel command line (the tests' one, plus --append: `--append quiet` is Debian's
default). Machines here are noisy: compare the ratios, not numbers from another day.
--baseline IMG (repeatable) boots another initrd in the same rounds, e.g. the image of an
earlier commit, to measure what a change costs at boot.

The peers get what an installed system gives them. mkinitramfs puts fsck into the image only
for a root file system type it can tell, from /etc/fstab or FSTYPE=; a chroot's fstab names no
root, so the bench sets FSTYPE=ext4 (the test root's type) in a conf.d file, and its image
checks the root before mounting it, as rdforge's and dracut's do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of a command, measured by GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%e %M", *cmd], check=True,
                       env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        wall, rss = tf.read().split()[-2:]
    return float(wall), int(rss) / 1024


def rdforge(out: Path, lock: Path) -> list[str]:
    return [sys.executable, "-m", "rdforge.cli", "build", "-q", "-o", str(out), "--lock", str(lock)]


def make_chroot(path: Path) -> None:
    """A trixie tree with the kernel, initramfs-tools and dracut-core, made by mmdebstrap."""
    from rdforge.config import Config
    from rdforge.sources.plan import archive_sources

    lines = [f"deb {s.uri} {' '.join(s.suites)} main" for s in archive_sources(Config())]
    subprocess.run(["mmdebstrap", "--variant=apt", "--include=linux-image-amd64,initramfs-tools,"
                    "dracut-core,zstd,busybox,systemd", "trixie", str(path), *lines], check=True)


class Mounted:
    """/proc, /sys and /dev bound into the chroot while the peers run."""

    def __init__(self, root: Path) -> None:
        self.points = [root / "proc", root / "sys", root / "dev"]

    def __enter__(self) -> None:
        for src, dst in zip(("/proc", "/sys", "/dev"), self.points, strict=True):
            subprocess.run(["mount", "--bind", src, str(dst)], check=True)

    def __exit__(self, *exc: object) -> None:
        for dst in reversed(self.points):
            subprocess.run(["umount", "-l", str(dst)], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--boot", action="store_true")
    ap.add_argument("--chroot", type=Path)
    ap.add_argument("--make-chroot", action="store_true")
    ap.add_argument("--append", default="", help="more kernel command line for every boot")
    ap.add_argument("--baseline", type=Path, action="append", default=[],
                    help="another initrd (an earlier rdforge's, say) booted in the same rounds")
    ns = ap.parse_args()
    if ns.make_chroot:
        make_chroot(ns.chroot)
    work = Path(tempfile.mkdtemp(prefix="rdforge-bench-"))
    rows: list[tuple[str, float, float, int]] = []
    images: dict[str, Path] = {}

    with tempfile.TemporaryDirectory(prefix="rdforge-cold-") as cold:
        wall, rss = timed(rdforge(work / "cold.img", work / "cold.lock"), {"RDFORGE_CACHE": cold})
    rows.append(("rdforge cold (empty cache)", wall, rss, (work / "cold.img").stat().st_size))
    warm = [timed(rdforge(work / "warm.img", work / "warm.lock")) for _ in range(ns.rounds)]
    rows.append(("rdforge warm, unchanged (median)", statistics.median(w for w, _ in warm),
                 max(r for _, r in warm), (work / "warm.img").stat().st_size))
    images["rdforge"] = work / "warm.img"
    # A warm build whose content changed (another timestamp, new at every run of the bench):
    # nothing can come from the compression cache, every step after unpacking runs.
    epoch = int(time.time())
    changed = [timed(rdforge(work / "changed.img", work / "changed.lock")
                     + ["--source-date-epoch", str(epoch + i)]) for i in range(ns.rounds)]
    rows.append(("rdforge warm, content changed", statistics.median(w for w, _ in changed),
                 max(r for _, r in changed), (work / "changed.img").stat().st_size))
    locked = [timed(rdforge(work / "locked.img", work / "warm.lock") + ["--locked", "--offline"])
              for _ in range(ns.rounds)]
    rows.append(("rdforge --locked --offline", statistics.median(w for w, _ in locked),
                 max(r for _, r in locked), (work / "locked.img").stat().st_size))

    if ns.chroot:
        kver = sorted(os.listdir(ns.chroot / "usr/lib/modules"))[-1]
        import json

        ours = json.loads((work / "warm.img.manifest.json").read_text())["kernel_version"]
        if kver != ours:
            sys.exit(f"the chroot has kernel {kver}, rdforge built for {ours}: update the chroot")
        # An installed system's fstab names an ext4 root: mkinitramfs then adds fsck for it.
        conf = ns.chroot / "etc/initramfs-tools/conf.d/rdforge-bench"
        conf.write_text("# Written by rdforge's bench: the test root's type, as an installed "
                        "system's fstab gives it\nFSTYPE=ext4\n")
        peers = {
            "mkinitramfs": ["chroot", str(ns.chroot), "mkinitramfs", "-o", "/tmp/peer.img", kver],
            "dracut": ["chroot", str(ns.chroot), "dracut", "-f", "--reproducible", "--no-hostonly",
                       "/tmp/peer.img", kver],
        }
        for name, cmd in peers.items():
            with Mounted(ns.chroot):
                runs = [timed(cmd) for _ in range(ns.rounds)]
            img = work / f"{name}.img"
            img.write_bytes((ns.chroot / "tmp/peer.img").read_bytes())
            rows.append((name, statistics.median(w for w, _ in runs), max(r for _, r in runs),
                         img.stat().st_size))
            images[name] = img

    base = rows[1][1]
    print(f"{'build':32} {'wall s':>8} {'peak MiB':>9} {'size MB':>8} {'wall / rdforge warm':>20}")
    for name, wall, rss, size in rows:
        print(f"{name:32} {wall:8.2f} {rss:9.0f} {size / 1e6:8.2f} {wall / base:20.2f}")

    for i, extra in enumerate(ns.baseline):
        images[f"baseline {i + 1}: {extra.name}"[:32]] = extra
    if ns.boot:
        from rdforge.tree.kmods import find_kernel
        from rdforge.vm.boot import BootOptions, boot, default_root

        kernel = find_kernel(images["rdforge"].with_name("warm.img"))
        root = default_root(BootOptions(initrd=images["rdforge"]))
        times: dict[str, list[float]] = {n: [] for n in images}
        failed: dict[str, int] = {}
        for _ in range(ns.rounds):
            for name, img in images.items():
                res = boot(BootOptions(initrd=img, kernel=kernel, root_image=root, echo=False,
                                       timeout=300, append=ns.append))
                if res.ok and res.guest_uptime:
                    times[name].append(res.guest_uptime)
                else:
                    failed[name] = failed.get(name, 0) + 1
                    print(f"{name}: boot failed: {res.reason}", file=sys.stderr)
        ref = statistics.median(times["rdforge"])
        title = f"boot{' +' + ns.append if ns.append else ''} (uptime at root init)"
        print(f"\n{title:32} {'median s':>8} {'min-max':>13} {'/ rdforge':>10}")
        for name, ts in times.items():
            med = statistics.median(ts)
            note = f"  ({failed[name]} of {ns.rounds} failed)" if name in failed else ""
            print(f"{name:32} {med:8.2f} {min(ts):6.2f}-{max(ts):<6.2f} {med / ref:10.2f}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
