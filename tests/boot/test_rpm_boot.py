"""The initrd built from rpms (the fedora profile, the test rpm distribution) boots the
kernel of its kernel-core package and reaches the root, as the Debian image does: a plain
ext4 root, and the Debian installer's LUKS+LVM layout with the passphrase typed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from rdforge.vm.boot import BootOptions, boot, default_root
from rdforge.vm.layouts import BY_NAME, PASSPHRASE, layout_disks

pytestmark = [pytest.mark.boot, pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("rpmbuild"),
                                 reason="rpm and createrepo-c: setup.sh installs them")]
TIMEOUT = 300


def test_rpm_built_image_reaches_the_root(rpm_build: Path) -> None:
    opts = BootOptions(initrd=rpm_build, echo=False, timeout=TIMEOUT)
    opts.root_image = default_root(opts)
    res = boot(opts)
    assert res.ok, res.reason + res.console[-3000:]
    assert "6.12" in res.console and "Reached target initrd-switch-root.target" in res.console


def test_rpm_built_image_opens_luks_and_lvm(rpm_build: Path) -> None:
    layout = BY_NAME["luks-lvm"]
    disks = layout_disks(layout, default_root(BootOptions()))
    prompt = "Please enter passphrase for disk"
    res = boot(BootOptions(initrd=rpm_build, echo=False, timeout=TIMEOUT, root_image=disks[0],
                           root_arg=layout.root_arg, console_input=((prompt, PASSPHRASE + "\n"),)))
    assert res.ok, res.reason + res.console[-3000:]
    assert prompt in res.console and re.search(r"EXT4-fs \(dm-\d+\): mounted", res.console)
