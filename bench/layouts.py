#!/usr/bin/env python3
"""Boot time of each storage layout: prints a table of the guest's uptime when it reached the
root (the test root prints it), and the wall time of the boot, per layout, with the default
image (or --initrd IMG), medians over --rounds, layouts booted --jobs at a time.

    python3 bench/layouts.py [--rounds 1] [--jobs 2] [--initrd IMG] [--only NAME ...]

The disks are the ones the boot tests use (rdforge.vm.layouts, made by trixie's lvm2, mdadm,
cryptsetup and btrfs-progs in a VM, cached). A passphrase prompt is answered at once, so a
LUKS layout's time includes its key derivation but no typing. The plain ext4 root is the
first row: the other rows compare with it in the same run. Under emulation (no KVM here)
absolute numbers are many times a real machine's; compare rows of one run."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdforge.config import Config  # noqa: E402
from rdforge.outputs.initrd import build  # noqa: E402
from rdforge.vm.boot import BootOptions, BootResult, boot, default_root  # noqa: E402
from rdforge.vm.layouts import LAYOUTS, PASSPHRASE, Layout, layout_disks, layout_tpm  # noqa: E402

PROMPT = "Please enter passphrase for disk"


def boot_layout(initrd: Path, layout: Layout | None) -> BootResult:
    opts = BootOptions(initrd=initrd, echo=False, timeout=600)
    source = default_root(opts)
    if layout is None:
        opts.root_image = source
        return boot(opts)
    disks = layout_disks(layout, source)
    with tempfile.TemporaryDirectory(prefix="rdforge-bench-tpm-") as tmp:
        opts.root_image, opts.disks, opts.root_arg = disks[0], tuple(disks[1:]), layout.root_arg
        opts.console_input = ((PROMPT, PASSPHRASE + "\n"),) if layout.passphrase else ()
        opts.tpm_state = layout_tpm(source, Path(tmp, "tpm")) if layout.tpm else None
        return boot(opts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--initrd", type=Path)
    ap.add_argument("--only", nargs="*", default=[])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rdforge-bench-") as tmp:
        initrd = a.initrd
        if initrd is None:
            initrd = Path(tmp, "initrd.img")
            build(Config(output=str(initrd), lock=str(Path(tmp, "initrd.lock"))))
        # The hibernation layout's root hibernates instead of printing the marker: not here.
        layouts: list[Layout | None] = [None] + [x for x in LAYOUTS if x.name != "luks-lvm-resume"
                                                 and (not a.only or x.name in a.only)]
        runs = [x for _ in range(a.rounds) for x in layouts]
        with ThreadPoolExecutor(max_workers=a.jobs) as ex:
            results = list(ex.map(lambda x: (x, boot_layout(initrd, x)), runs))
    rows: dict[str, list[BootResult]] = {}
    for layout, res in results:
        rows.setdefault(layout.name if layout else "plain ext4", []).append(res)
    print(f"{'layout':<16} {'root reached (guest s)':>23} {'wall s':>8}  result")
    base = None
    for name, rs in rows.items():
        ups = [r.guest_uptime for r in rs if r.ok and r.guest_uptime is not None]
        up = statistics.median(ups) if ups else None
        base = base or up
        wall = statistics.median(r.seconds for r in rs)
        ratio = f" ({up / base:.2f}x)" if up and base else ""
        shown = f"{up:.1f}{ratio}" if up else "-"
        print(f"{name:<16} {shown:>23} {wall:>8.1f}  "
              + ("ok" if all(r.ok for r in rs) else rs[0].reason))
    return 0


if __name__ == "__main__":
    sys.exit(main())
