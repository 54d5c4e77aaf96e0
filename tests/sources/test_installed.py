"""A build root's installed kernel as dpkg records it: bookworm's kernel packages ship their
modules as /lib/modules/KVER, which a merged /usr makes /usr/lib/modules/KVER; both are
checked against dpkg's md5sums, and a package with nothing recorded there is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rdforge.errors import SourceError
from rdforge.sources.archive import Package
from rdforge.sources.installed import InstalledRoot

KVER = "6.1.0-28-amd64"
KERNEL = Package(f"linux-image-{KVER}", "6.1.119-1", "amd64", "k.deb", "0" * 64, 1)


def _root(tmp: Path, merged: bool, shipped_as: str) -> Path:
    """A root with the kernel's one module installed; dpkg's md5sums name it shipped_as."""
    root = tmp / "root"
    (root / "usr/lib").mkdir(parents=True)
    if merged:
        (root / "lib").symlink_to("usr/lib")
    mod = root / ("usr/lib" if merged else "lib") / f"modules/{KVER}/kernel/x.ko"
    mod.parent.mkdir(parents=True)
    mod.write_bytes(b"module")
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        f"Package: {KERNEL.name}\nStatus: install ok installed\nVersion: {KERNEL.version}\n"
        "Architecture: amd64\n")
    md5 = hashlib.md5(b"module").hexdigest()  # noqa: S324
    (info / f"{KERNEL.name}.md5sums").write_text(f"{md5}  {shipped_as}/modules/{KVER}/kernel/x.ko\n")
    return root


@pytest.mark.parametrize("merged", [True, False])
def test_bookworm_s_lib_modules_are_checked(tmp_path: Path, merged: bool) -> None:
    root = _root(tmp_path, merged, "lib")
    inst = InstalledRoot.read(root)
    assert inst.verify_tree(KERNEL, f"/usr/lib/modules/{KVER}/") == 1
    assert inst.module_dir(KVER) == root / ("usr/lib" if merged else "lib") / f"modules/{KVER}"
    (inst.module_dir(KVER) / "kernel/x.ko").write_bytes(b"altered")
    with pytest.raises(SourceError, match="differs from what dpkg installed"):
        inst.verify_tree(KERNEL, f"/usr/lib/modules/{KVER}/")


def test_trixie_s_usr_lib_modules_are_checked(tmp_path: Path) -> None:
    root = _root(tmp_path, True, "usr/lib")
    assert InstalledRoot.read(root).verify_tree(KERNEL, f"/usr/lib/modules/{KVER}/") == 1


def test_a_kernel_with_nothing_recorded_there_is_refused(tmp_path: Path) -> None:
    root = _root(tmp_path, True, "usr/lib")
    (root / f"var/lib/dpkg/info/{KERNEL.name}.md5sums").write_text("")
    with pytest.raises(SourceError, match="records no file of it under"):
        InstalledRoot.read(root).verify_tree(KERNEL, f"/usr/lib/modules/{KVER}/")
    with pytest.raises(SourceError, match="no modules of kernel 9.9"):
        InstalledRoot.read(root).module_dir("9.9")
