"""Fault injection into the cache: every derived entry is checked when it is read, so a
damaged one is dropped, rebuilt from its inputs and reported, and the image is the known-good
one. (A private copy of the cache: the damage must not reach builds running beside this.)"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("cache-damage")]


class Cache:
    def __init__(self, root: Path, work: Path) -> None:
        self.root, self.work = root, work

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "rdforge.cli", "build", "-q", "-o",
                str(self.work / "initrd.img"), "--lock", str(self.work / "rdforge.lock"), *extra]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "RDFORGE_CACHE": str(self.root)}

    def build(self) -> tuple[str, str]:
        r = subprocess.run(self.command(), capture_output=True, text=True, env=self.env)
        assert r.returncode == 0, r.stderr
        return hashlib.sha256((self.work / "initrd.img").read_bytes()).hexdigest(), r.stderr

    def entries(self, pattern: str) -> list[Path]:
        return sorted(p for p in self.root.glob(pattern) if not p.name.endswith(".sha256"))

    def kernel(self) -> Path:
        (k,) = [p for p in (self.root / "kernels").iterdir() if (p / "vmlinuz").exists()]
        return k


def flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, default_build: Path) -> tuple[Cache, str]:
    from rdforge.sources.cache import cache_root

    root = tmp_path_factory.mktemp("cache")
    shared = cache_root()
    # Downloads are shared (content-addressed, checked on use; no trial damages them); the
    # derived entries are made anew here.
    (root / "blobs").symlink_to(shared / "blobs")
    for d in ("dists", "index"):
        if (shared / d).exists():
            shutil.copytree(shared / d, root / d)
    c = Cache(root, tmp_path_factory.mktemp("out"))
    good, _ = c.build()
    assert good == hashlib.sha256(default_build.read_bytes()).hexdigest()
    return c, good


def test_flipped_compressed_and_unpacked_entries(cache: tuple[Cache, str]) -> None:
    c, good = cache
    flip(c.entries("compressed/*")[0])
    unpacked = c.entries("unpacked/*/*")
    flip(unpacked[len(unpacked) // 2])
    sha, err = c.build()
    assert sha == good
    assert err.count("is damaged") == 2 and "compressed" in err and "unpacked" in err, err
    assert c.build() == (good, "")  # repaired: nothing to report the next time


def test_truncated_compressed_and_flipped_installed_modules(cache: tuple[Cache, str]) -> None:
    c, good = cache
    comp = c.entries("compressed/*")[0]
    comp.write_bytes(comp.read_bytes()[:4096])
    flip(c.entries("kernels/*/installed/*")[0])
    sha, err = c.build()
    assert sha == good and err.count("is damaged") == 2, err


def test_flipped_extracted_module_is_extracted_again(cache: tuple[Cache, str]) -> None:
    c, good = cache
    k = c.kernel()
    for p in (k / "installed").iterdir():
        p.unlink()
    flip(next((k / "modules/kernel/fs/ext4").glob("ext4.ko*")))
    sha, err = c.build()
    assert sha == good and "differs from what was extracted" in err, err


def test_damaged_kernel_index_is_extracted_again(cache: tuple[Cache, str]) -> None:
    c, good = cache
    (idx,) = c.kernel().glob("index.v*.json")
    idx.write_text(idx.read_text()[:100])
    sha, err = c.build()
    assert sha == good and "its index does not load" in err, err


def test_damaged_vmlinuz_never_reaches_a_boot_or_uki(cache: tuple[Cache, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from rdforge.errors import KernelError
    from rdforge.tree.kmods import find_kernel

    c, good = cache
    monkeypatch.setenv("RDFORGE_CACHE", str(c.root))
    img = c.work / "initrd.img"
    flip(c.kernel() / "vmlinuz", at=4096)
    with pytest.raises(KernelError, match="vmlinuz was damaged"):
        find_kernel(img)
    assert c.build()[0] == good  # extracted anew
    assert find_kernel(img).read_bytes()[:2] == b"MZ"


def test_builds_killed_at_any_point_leave_no_litter_and_no_wrong_image(
        cache: tuple[Cache, str]) -> None:
    """SIGKILL while the kernel is extracted, modules installed, the image compressed and
    written; the next build gives the known-good bytes and leaves nothing behind."""
    import signal
    import time

    c, good = cache
    out = c.work / "initrd.img"
    before = out.read_bytes()
    trials = 0
    for prep, delays in (("kernel", (1.5, 4.0, 8.0)), ("epoch", (1.0, 3.0, 6.0, 9.0))):
        for i, delay in enumerate(delays):
            extra: tuple[str, ...] = ()
            if prep == "kernel":
                shutil.rmtree(c.kernel())
            else:  # content no cache holds: every step through compression runs
                extra = ("--source-date-epoch", str(1_700_000_000 + 97 * trials + i))
            proc = subprocess.Popen(c.command(*extra), env=c.env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            trials += 1
            # Whatever it reached, the image at the output path is a complete one: the last
            # good image, or the killed build's own, finished before the kill.
            now = out.read_bytes()
            if now != before:
                from rdforge.formats import compress, cpio

                entries, _end = cpio.read(compress.decompress(now))
                assert any(e.name == "init" for e in entries)
            time.sleep(2.5)  # past the age under which a temporary might be a live writer's
            assert c.build()[0] == good
            before = good_bytes = out.read_bytes()
            assert hashlib.sha256(good_bytes).hexdigest() == good
            litter = [p.name for p in c.work.iterdir() if p.name.startswith(".")]
            litter += [p.name for p in c.root.iterdir() if p.name.startswith(".kernel-")]
            litter += [p.name for p in (c.root / "compressed").iterdir() if ".tmp-" in p.name]
            assert litter == [], (prep, delay, litter)
    assert trials == 7
