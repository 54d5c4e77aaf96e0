"""--modules-dir: modules from an installed kernel's lib/modules/KVER (DKMS, custom kernels)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_kernel

from rdforge.formats import compress, cpio

pytestmark = pytest.mark.integration


def _build(tmp_path: Path, moddir: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", "build", "--offline", "--modules-dir",
                           str(moddir), "-o", str(tmp_path / name), "--lock", str(tmp_path / "l"),
                           "-q"], capture_output=True, text=True)


def _files(img: Path) -> dict[str, bytes]:
    entries, _ = cpio.read(compress.decompress(img.read_bytes()))
    return {e.name: e.data for e in entries}


def test_an_installed_kernels_modules_give_the_package_builds_image(tmp_path: Path,
                                                                     default_build: Path) -> None:
    moddir, _kver = install_kernel(default_build, tmp_path / "root")
    r = _build(tmp_path, moddir, "initrd.img")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "initrd.img").read_bytes() == default_build.read_bytes()
    assert not (moddir / "installed").exists()  # nothing written into the kernel's directory


def test_a_dkms_module_under_updates_wins_over_the_kernels_own(tmp_path: Path,
                                                               default_build: Path) -> None:
    moddir, kver = install_kernel(default_build, tmp_path / "root")
    (moddir / "updates/dkms").mkdir(parents=True)
    shutil.copyfile(moddir / "kernel/drivers/md/dm-mod.ko.xz", moddir / "updates/dkms/dm-mod.ko.xz")
    r = _build(tmp_path, moddir, "dkms.img")
    assert r.returncode == 0, r.stderr
    files = _files(tmp_path / "dkms.img")
    base = f"usr/lib/modules/{kver}"
    dm = [p for p in files if p.startswith(base) and "/dm-mod.ko" in p]
    assert len(dm) == 1 and dm[0].startswith(f"{base}/updates/dkms/dm-mod.ko"), dm
    dep = files[f"{base}/modules.dep"].decode()
    crypt = next(line for line in dep.splitlines() if line.startswith("kernel/drivers/md/dm-crypt"))
    assert "updates/dkms/dm-mod.ko" in crypt


def test_a_directory_that_is_no_kernels_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = _build(tmp_path, tmp_path / "empty", "x.img")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "not a lib/modules/KVER directory" in r.stderr
