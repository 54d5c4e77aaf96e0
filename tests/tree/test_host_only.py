"""--modules host-only: modules for this machine's devices, from /sys modaliases matched
against the kernel's module aliases, /proc/modules and the root file system type."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdforge.config import Config
from rdforge.tree import kmods

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kidx() -> kmods.KernelIndex:
    from rdforge.sources.fetch import fetch_all
    from rdforge.sources.plan import kernel_package, load_universe

    cfg = Config()
    pkg = kernel_package(load_universe(cfg).universe, cfg)
    return kmods.index_kernel_deb(fetch_all([pkg], False)[0], pkg.sha256)


def _fake_host(tmp: Path, modaliases: list[str], root_fs: str, loaded: list[str] | None) -> tuple[Path, Path]:
    sys_root, proc = tmp / "sys", tmp / "proc"
    for i, ma in enumerate(modaliases):
        d = sys_root / "devices" / f"dev{i}"
        d.mkdir(parents=True)
        (d / "modalias").write_text(ma + "\n")
    (proc / "self").mkdir(parents=True)
    (proc / "self/mounts").write_text(f"/dev/vda1 / {root_fs} rw 0 0\nproc /proc proc rw 0 0\n")
    if loaded is not None:
        (proc / "modules").write_text("".join(f"{m} 16384 0 - Live 0x0\n" for m in loaded))
    return sys_root, proc


def test_devices_and_root_fs_select_their_modules(kidx: kmods.KernelIndex, tmp_path: Path) -> None:
    sys_root, proc = _fake_host(tmp_path, [
        "virtio:d00000002v00001AF4",                              # virtio block
        "pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc08i02",  # an NVMe controller
        "usb:v046DpC52Bd1211dc00dsc00dp00ic03isc01ip01in00",      # a USB keyboard (HID)
    ], "xfs", None)
    found, sources = kmods.host_modules(kidx, sys_root, proc)
    assert {"virtio_blk", "nvme", "xfs", "usbhid"} <= found, sorted(found)
    assert "btrfs" not in found and "ahci" not in found
    assert any("modalias" in s for s in sources)
    mods = kmods.select(kidx, (), tuple(sorted(found)))
    names = {m.name for m in mods}
    assert "nvme_core" in names  # dependencies come along
    generic = kmods.select(kidx, kmods.GENERIC_MODULES)
    assert len(mods) < len(generic) // 4


def test_loaded_modules_count_and_no_sources_is_reported(kidx: kmods.KernelIndex,
                                                         tmp_path: Path) -> None:
    sys_root, proc = _fake_host(tmp_path, [], "ext4", ["dm_crypt", "not_a_module"])
    found, sources = kmods.host_modules(kidx, sys_root, proc)
    assert {"dm_crypt", "ext4"} <= found and "not_a_module" not in found
    found, sources = kmods.host_modules(kidx, tmp_path / "none", tmp_path / "none")
    assert not found and not sources


def test_a_uefi_host_gets_efivarfs(kidx: kmods.KernelIndex, tmp_path: Path) -> None:
    sys_root, proc = _fake_host(tmp_path, [], "ext4", [])
    assert "efivarfs" not in kmods.host_modules(kidx, sys_root, proc)[0]
    (sys_root / "firmware/efi").mkdir(parents=True)
    found, sources = kmods.host_modules(kidx, sys_root, proc)
    assert "efivarfs" in found and "UEFI firmware" in sources
    assert "efivarfs" in {m.name for m in kmods.select(kidx, kmods.GENERIC_MODULES)}
