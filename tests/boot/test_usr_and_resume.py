"""A separate /usr (from the root's fstab, or mount.usr= on the command line) and resume from
hibernation (resume= naming the swap device: a plain one by UUID, and an LV inside LUKS as
the installer's encrypted LVM has it): the generic image brings both up before it switches
into the root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rdforge.vm.boot import BootOptions, boot, busybox_deb, default_root
from rdforge.vm.layouts import BY_NAME, PASSPHRASE, layout_disks
from rdforge.vm.rootfs import (
    FS_UUID,
    HIBERNATE_INIT,
    HIBERNATING,
    RESUMED,
    SWAP_UUID,
    USR_UUID,
    make_root_image,
    make_split_usr_images,
    make_swap,
)

pytestmark = [pytest.mark.boot, pytest.mark.integration]
TIMEOUT = 300


@pytest.mark.parametrize("how", ["fstab", "mount.usr"])
def test_separate_usr_is_mounted_before_the_switch(default_build: Path, tmp_path: Path,
                                                   how: str) -> None:
    root, usr = make_split_usr_images(busybox_deb(), how == "fstab", tmp_path)
    append = f"mount.usr=UUID={USR_UUID} mount.usrfstype=ext4" if how == "mount.usr" else ""
    res = boot(BootOptions(initrd=default_build, echo=False, timeout=TIMEOUT, root_image=root,
                           disks=(usr,), root_arg=f"root=UUID={FS_UUID}", append=append))
    assert res.ok, res.reason + res.console[-3000:]
    # The root's init saw /usr mounted from the second disk (systemd switches only into a
    # root whose os-release it finds, and that lives in /usr here).
    assert "RDFORGE-USR dev=/dev/vdb fs=ext4" in res.console, res.console[-3000:]


def test_hibernated_root_resumes_and_a_boot_without_an_image_is_not_delayed(
        default_build: Path, tmp_path: Path) -> None:
    root = make_root_image(busybox_deb(), init=HIBERNATE_INIT)
    swap = make_swap(tmp_path / "swap.img")
    root_copy = tmp_path / "root.img"
    shutil.copyfile(root, root_copy)
    opts = dict(initrd=default_build, echo=False, timeout=TIMEOUT, root_image=root_copy,
                disks=(swap,), disks_writable=True, root_arg=f"root=UUID={FS_UUID}",
                append=f"resume=UUID={SWAP_UUID}")
    # 1. The swap holds no image: the resume check lets the boot go on at once, and the root
    #    hibernates (the kernel writes its image to the swap and powers off).
    res = boot(BootOptions(expect="reboot: Power down", **opts))  # type: ignore[arg-type]
    assert res.ok, res.reason + res.console[-3000:]
    line = next(x for x in res.console.splitlines() if HIBERNATING in x)
    uptime = float(line.split("uptime=")[1].split()[0])
    assert uptime < 60, line  # no device timeout (90 s) waited for in the initrd
    assert "PM: hibernation: hibernation entry" in res.console, res.console[-3000:]
    # 2. The next boot resumes: the same init goes on after its write to /sys/power/state;
    #    it did not start again.
    res = boot(BootOptions(expect=RESUMED, **opts))  # type: ignore[arg-type]
    assert res.ok, res.reason + res.console[-3000:]
    assert HIBERNATING not in res.console, res.console[-3000:]
    # The kernel of boot 1 came back from the image (its own log line, on this console).
    assert "PM: hibernation: hibernation exit" in res.console, res.console[-3000:]


def test_resume_from_a_swap_lv_inside_luks(default_build: Path, tmp_path: Path) -> None:
    layout = BY_NAME["luks-lvm-resume"]
    (cached,) = layout_disks(layout, default_root(BootOptions()))
    disk = tmp_path / "disk.img"  # written by both boots: a sparse copy of the cached disk
    subprocess.run(["cp", "--sparse=always", str(cached), str(disk)], check=True)
    opts = dict(initrd=default_build, echo=False, timeout=TIMEOUT, root_image=disk,
                disks_writable=True, root_arg=layout.root_arg,
                console_input=(("Please enter passphrase for disk", PASSPHRASE + "\n"),))
    res = boot(BootOptions(expect="reboot: Power down", **opts))  # type: ignore[arg-type]
    assert res.ok, res.reason + res.console[-3000:]
    assert "PM: hibernation: hibernation entry" in res.console, res.console[-3000:]
    assert "swapon /dev/block/" not in res.console, res.console[-3000:]  # the LV was swapped on
    # The passphrase again, then the kernel finds its image on the LV and comes back.
    res = boot(BootOptions(expect=RESUMED, **opts))  # type: ignore[arg-type]
    assert res.ok, res.reason + res.console[-3000:]
    assert HIBERNATING not in res.console, res.console[-3000:]
    assert "PM: hibernation: hibernation exit" in res.console, res.console[-3000:]
