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

    def build(self) -> tuple[str, str]:
        out = self.work / "initrd.img"
        r = subprocess.run([sys.executable, "-m", "rdforge.cli", "build", "-q", "-o", str(out),
                            "--lock", str(self.work / "rdforge.lock")], capture_output=True,
                           text=True, env={**os.environ, "RDFORGE_CACHE": str(self.root)})
        assert r.returncode == 0, r.stderr
        return hashlib.sha256(out.read_bytes()).hexdigest(), r.stderr

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
    # Downloads are read only (hard links: no copy); the derived entries are made anew here.
    subprocess.run(["cp", "-al", str(shared / "blobs"), str(root / "blobs")], check=True)
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
    from rdforge.vm.boot import find_kernel

    c, good = cache
    monkeypatch.setenv("RDFORGE_CACHE", str(c.root))
    img = c.work / "initrd.img"
    flip(c.kernel() / "vmlinuz", at=4096)
    with pytest.raises(KernelError, match="vmlinuz was damaged"):
        find_kernel(img)
    assert c.build()[0] == good  # extracted anew
    assert find_kernel(img).read_bytes()[:2] == b"MZ"
