"""Credentials reach the initrd: a root password credential opens the emergency shell; without
one, or with a corrupt one, the shell stays locked and the boot does not hang."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from conftest import initrd_unit_credentials

from rdforge.formats import creds
from rdforge.vm.boot import BootOptions, BootResult, boot, default_root

pytestmark = [pytest.mark.boot, pytest.mark.integration]
PASSWORD = "rdforge-emergency"
MISSING_ROOT = dict(root_arg="root=LABEL=does-not-exist",
                    append="systemd.default_device_timeout_sec=15")


def _emergency(initrd: Path, expect: str, **kw: object) -> BootResult:
    opts = BootOptions(initrd=initrd, echo=False, timeout=180, stop_on_fail=False, expect=expect,
                       **MISSING_ROOT, **kw)  # type: ignore[arg-type]
    opts.root_image = default_root(opts)
    return boot(opts)


def _hash() -> str:
    return subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True,
                          check=True).stdout.strip()


LOGIN = (("password for system maintenance", PASSWORD + "\n"), ("# ", "echo RDFORGE-$((6*7))\n"))


def test_root_password_credential_opens_the_emergency_shell(default_build: Path,
                                                            tmp_path: Path) -> None:
    cred = tmp_path / "passwd.hashed-password.root.cred"
    cred.write_bytes(creds.armor(creds.encrypt("passwd.hashed-password.root", _hash().encode())))
    res = _emergency(default_build, "RDFORGE-42", credentials=(cred,), console_input=LOGIN)
    assert res.ok, res.reason + res.console[-3000:]
    assert "Received untrusted credentials: passwd.hashed-password.root" in res.console


def test_plain_credential_through_smbios(default_build: Path) -> None:
    res = _emergency(default_build, "RDFORGE-42", console_input=LOGIN,
                     smbios_credentials=(f"passwd.plaintext-password.root={PASSWORD}",))
    assert res.ok, res.reason + res.console[-3000:]


@pytest.mark.parametrize("case", ["none", "corrupt"])
def test_without_a_valid_credential_root_stays_locked(default_build: Path, tmp_path: Path,
                                                      case: str) -> None:
    extra: tuple[Path, ...] = ()
    if case == "corrupt":
        raw = bytearray(creds.encrypt("passwd.hashed-password.root", _hash().encode()))
        raw[-30] ^= 1
        cred = tmp_path / "passwd.hashed-password.root.cred"
        cred.write_bytes(base64.b64encode(bytes(raw)))
        extra = (cred,)
    res = _emergency(default_build, "the root account is locked", credentials=extra)
    assert res.ok, res.reason + res.console[-3000:]
    assert "RDFORGE-42" not in res.console
    if case == "corrupt":
        assert "Failed to start rdforge-root-pass" in res.console, res.console[-3000:]


def test_luks2_root_unlocked_by_credential_without_typing(default_build: Path,
                                                          tmp_path: Path) -> None:
    cred = tmp_path / "cryptsetup.passphrase.cred"
    cred.write_bytes(creds.armor(creds.encrypt("cryptsetup.passphrase", b"luks-by-credential")))
    opts = BootOptions(initrd=default_build, echo=False, timeout=240, credentials=(cred,),
                       luks_passphrase="luks-by-credential", luks_type=False)
    opts.root_image = default_root(opts)
    res = boot(opts)
    assert res.ok, res.reason + res.console[-3000:]
    assert "Please enter passphrase" not in res.console
    assert "Check on /dev/mapper/cryptroot" in res.console


EXTRA_UNIT = """[Unit]
Description=rdforge unit from a credential
DefaultDependencies=no

[Service]
Type=oneshot
ExecStart=/bin/bash -c 'echo "RDFORGE-EXTRA-UNIT ran" > /dev/console'
"""


def test_units_from_credentials_run_in_the_initrd(default_build: Path, tmp_path: Path) -> None:
    # systemd 257 installs a unit from systemd.extra-unit.* and a drop-in from
    # systemd.unit-dropin.*; the drop-in makes initrd.target want the unit.
    unit, dropin = initrd_unit_credentials(tmp_path, "rdforge-extra.service", EXTRA_UNIT)
    opts = BootOptions(initrd=default_build, echo=False, timeout=240, credentials=(unit, dropin))
    opts.root_image = default_root(opts)
    res = boot(opts)
    assert res.ok, res.reason + res.console[-3000:]
    assert "RDFORGE-EXTRA-UNIT ran" in res.console, res.console[-3000:]
    # In the initrd, before switch-root.
    assert res.console.index("RDFORGE-EXTRA-UNIT ran") < res.console.index("Switch Root")


def _udev_marker_rule(marker: str) -> str:
    return (f'ACTION=="add", SUBSYSTEM=="block", ENV{{ID_FS_LABEL}}=="rdforge-root", '
            f"RUN+=\"/bin/bash -c 'echo {marker} $kernel > /dev/kmsg'\"\n")


def test_udev_rules_from_credentials_apply_to_coldplug(default_build: Path, tmp_path: Path) -> None:
    # udev's credential loader runs only when a udev.* credential is there: one through
    # SMBIOS (a plain system credential), one in /.extra (an encrypted one) must both apply.
    name = "udev.rules.98-rdforge-extra"
    cred = tmp_path / f"{name}.cred"
    cred.write_bytes(creds.armor(creds.encrypt(name, _udev_marker_rule("RDFORGE-UDEV-EXTRA").encode())))
    opts = BootOptions(initrd=default_build, echo=False, timeout=240, credentials=(cred,),
                       smbios_credentials=("udev.rules.99-rdforge-smbios="
                                           + _udev_marker_rule("RDFORGE-UDEV-SMBIOS"),))
    opts.root_image = default_root(opts)
    res = boot(opts)
    assert res.ok, res.reason + res.console[-3000:]
    # The rules were in place when the root disk's event came: before switch-root.
    for marker in ("RDFORGE-UDEV-EXTRA vda", "RDFORGE-UDEV-SMBIOS vda"):
        assert marker in res.console, res.console[-3000:]
        assert res.console.index(marker) < res.console.index("Switch Root")
    assert "Starting systemd-udev-load-credentials.service" in res.console
