"""Boot the default initrd with the real trixie kernel in qemu and read the serial console."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.vm.boot import BootOptions, boot, default_root
from rdforge.vm.rootfs import FS_UUID, MARKER

pytestmark = [pytest.mark.boot, pytest.mark.integration]
TIMEOUT = 240


def _boot(initrd: Path, **kw: object) -> tuple[bool, str, str]:
    opts = BootOptions(initrd=initrd, echo=False, timeout=TIMEOUT, **kw)  # type: ignore[arg-type]
    if opts.root_image is None:
        opts.root_image = default_root(opts)
    res = boot(opts)
    return res.ok, res.reason, res.console


def test_boots_to_root_by_label_on_virtio(default_build: Path, tmp_path: Path) -> None:
    log = tmp_path / "boot.log"
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "boot", "--initrd",
                        str(default_build), "--root-from-packages", "--timeout", str(TIMEOUT),
                        "--log", str(log), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["ok"] and res["guest_uptime"] > 0
    console = log.read_text()
    assert re.search(r"Reached target .*Initrd Default Target", console)
    assert re.search(r"Starting .*Switch Root", console)
    assert MARKER in console
    assert {"kernel", "initrd", "switch-root", "root"} <= set(res["phases"])
    # The boot path skips what it has no job for: udev's credential loader without a udev.*
    # credential, the masked /tmp and FUSE control mounts, the locked-root fallback.
    assert "Load udev Rules from Credentials skipped" in console
    for unit in ("tmp.mount", "sys-fs-fuse-connections.mount", "rdforge-root-account.service",
                 "modprobe@fuse.service"):
        # The console shortens long status lines: match the name's first 20 characters.
        assert not re.search(rf"(Starting|Mounting) {re.escape(unit[:20])}", console), unit


def test_image_with_early_microcode_boots_with_the_early_loader_active(microcode_build: Path) -> None:
    """qemu does not let a guest apply microcode, but with the hypervisor bit off the kernel's
    early loader runs (it is off in VMs) and must find the early cpio the boot still works
    past: the compressed archive after it unpacks, and the root is reached."""
    ok, reason, console = _boot(microcode_build, extra_qemu=("-cpu", "Skylake-Client-v1,-hypervisor"))
    assert ok, reason + console[-3000:]
    assert re.search(r"microcode: Current revision: 0x", console)
    assert "Initramfs unpacking failed" not in console


def test_boots_by_uuid(default_build: Path) -> None:
    ok, reason, console = _boot(default_build, root_arg=f"root=UUID={FS_UUID}")
    assert ok, reason + console[-3000:]


@pytest.mark.parametrize("bus", ["nvme", "ahci", "scsi", "usb"])
def test_boots_from_other_disk_buses(default_build: Path, bus: str) -> None:
    ok, reason, console = _boot(default_build, disk_bus=bus)
    assert ok, f"{bus}: {reason}\n{console[-3000:]}"


@pytest.mark.parametrize("fs", ["xfs", "btrfs"])
def test_boots_other_root_file_systems(default_build: Path, fs: str) -> None:
    ok, reason, console = _boot(default_build, root_fs=fs)
    assert ok, f"{fs}: {reason}\n{console[-3000:]}"


def test_missing_root_is_reported_as_failure_not_hang(default_build: Path) -> None:
    opts = BootOptions(initrd=default_build, echo=False, timeout=TIMEOUT,
                       root_arg="root=LABEL=does-not-exist",
                       append="systemd.default_device_timeout_sec=20")
    opts.root_image = default_root(opts)
    res = boot(opts)
    assert not res.ok
    assert "emergency" in res.reason or "timed out waiting for a device" in res.reason, res.reason
    assert res.seconds < TIMEOUT


def test_luks2_root_unlocked_with_passphrase_typed_on_console(default_build: Path) -> None:
    """A wrong passphrase is refused and asked again; the right one unlocks the LUKS2 root with
    systemd-cryptsetup in the initrd, and the root behind it is reached."""
    opts = BootOptions(initrd=default_build, echo=False, timeout=TIMEOUT, luks_passphrase="s3cret",
                       console_input=(("passphrase for disk", "wrong\n"),))
    opts.root_image = default_root(opts)
    res = boot(opts)
    assert res.ok, res.reason + res.console[-3000:]
    prompts = res.console.count("Please enter passphrase for disk cryptroot")
    assert prompts >= 2, f"the wrong passphrase was not refused ({prompts} prompt)"
    # The root came from the mapping systemd-cryptsetup made. (Not the unit's own status
    # line: the password agent shares the console line with it and can break it up.)
    assert "Found device dev-mapper-cryptroot.device" in res.console
    assert "Check on /dev/mapper/cryptroot" in res.console


@pytest.mark.parametrize("compression", ["lz4", "xz"])
def test_other_compressions_boot(tmp_path: Path, compression: str) -> None:
    from rdforge.config import Config
    from rdforge.outputs.initrd import build

    img = tmp_path / "initrd.img"
    build(Config(output=str(img), lock=str(tmp_path / "rdforge.lock"), compression=compression))
    ok, reason, console = _boot(img)
    assert ok, f"{compression}: {reason}\n{console[-3000:]}"
