"""The console keymap at the passphrase prompt on the VT: a German map chosen at boot by a
vconsole.keymap credential (SMBIOS, no rebuild) for the generic image, or by the `keymap`
setting, and the passphrase typed as the key presses a German user makes on the PS/2
keyboard."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rdforge.config import Config
from rdforge.outputs.initrd import build
from rdforge.vm.boot import BootOptions, BootResult, boot, default_root
from rdforge.vm.layouts import BY_NAME, LUKS1_UUID, PASSPHRASE, layout_disks

pytestmark = [pytest.mark.boot, pytest.mark.integration]
PROMPT = "Please enter passphrase for disk"
# "rdforge-test" on a German keyboard: the minus is the key a US keyboard has its slash on.
# Under the kernel's built-in US map these keys give "rdforge/test", which the disk refuses.
GERMAN_KEYS = "r d f o r g e slash t e s t ret"


def _type_on_the_vt(initrd: Path, smbios: tuple[str, ...] = ()) -> BootResult:
    assert PASSPHRASE == "rdforge-test"
    disks = layout_disks(BY_NAME["luks1"], default_root(BootOptions()))
    res = boot(BootOptions(
        initrd=initrd, echo=False, timeout=300, root_image=disks[0],
        root_arg=f"rd.luks.name={LUKS1_UUID}=cryptroot root=/dev/mapper/cryptroot",
        append="console=tty1",  # the VT is the console; the serial one shows the kernel's log
        smbios_credentials=smbios, vt_keys=((PROMPT, GERMAN_KEYS),), expect="EXT4-fs (dm-"))
    assert res.ok, res.reason + res.console[-3000:]
    # Loaded before the prompt, and the first try opened it (no second prompt).
    assert res.console.index("console keymap de-latin1 loaded") < res.console.index(PROMPT)
    assert res.console.count(PROMPT) == 1, res.console[-3000:]
    assert re.search(r"EXT4-fs \(dm-\d+\): mounted", res.console)
    return res


def test_german_keymap_from_a_credential_opens_the_disk_typed_on_the_vt(
        default_build: Path) -> None:
    res = _type_on_the_vt(default_build, ("vconsole.keymap=de-latin1",))
    assert "rdforge: console keymap de-latin1 loaded (from the vconsole.keymap credential)" \
        in res.console, res.console[-3000:]


def test_german_keymap_from_the_setting_opens_the_disk_typed_on_the_vt(tmp_path: Path) -> None:
    img = tmp_path / "initrd.img"
    build(Config(output=str(img), lock=str(tmp_path / "rdforge.lock"), keymap="de-latin1"))
    res = _type_on_the_vt(img)
    assert "rdforge: console keymap de-latin1 loaded (from /etc/vconsole.conf)" in res.console, \
        res.console[-3000:]
