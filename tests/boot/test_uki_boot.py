"""A UKI booted by UEFI firmware (OVMF) from an ESP made without mounting; a system
extension, a credential and an addon placed in its extra.d folder reach the initrd; with a TPM,
PCR 11 in the initrd holds what rdforge predicted and signed a policy for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import initrd_unit_credentials

from rdforge.formats import creds, pcrsig, tpm2
from rdforge.formats.pe import PE
from rdforge.outputs.sysext import SysextOptions, build_sysext
from rdforge.outputs.uki import UkiOptions, build_addon, build_uki
from rdforge.vm.boot import BootOptions, BootResult, boot, default_root
from rdforge.vm.rootfs import LABEL

pytestmark = [pytest.mark.boot, pytest.mark.integration]

UNIT = """[Unit]
DefaultDependencies=no
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/bash -c "shopt -s nullglob; echo RDFORGE-UKI-SYSEXT /kernel/x86/microcode/* > /dev/console"
"""


def _signed_uki_and_sysext(base: Path, keys: tuple[Path, Path], tmp: Path,
                           ucode: Path | None = None) -> tuple[Path, Path]:
    """A signed UKI of `base` booting the test root, and a signed sysext whose unit prints
    RDFORGE-UKI-SYSEXT and the early microcode files the initrd holds."""
    uki = tmp / "vmlinuz.efi"
    build_uki(UkiOptions(initrd=base, output=uki, cmdline=f"console=ttyS0 panic=-1 root=LABEL={LABEL} rw",
                         key=keys[0], cert=keys[1], microcode=ucode))
    (tmp / "m.service").write_text(UNIT)
    sysext = tmp / "ukimark.raw"
    build_sysext(SysextOptions(name="ukimark", base=base, output=sysext,
                               files={"usr/lib/systemd/system/m.service": str(tmp / "m.service")},
                               enable=["m.service"], key=keys[0], cert=keys[1]))
    return uki, sysext


def _boot_to_root(opts: BootOptions) -> BootResult:
    opts.root_image = default_root(opts)
    res = boot(opts)
    assert res.ok, res.reason + res.console[-3000:]
    return res


def test_uki_boots_with_sysext_credential_and_addon_from_extra_d(
        trusted_build: Path, vendor_keys: tuple[Path, Path], tmp_path: Path) -> None:
    uki, sysext = _signed_uki_and_sysext(trusted_build, vendor_keys, tmp_path)
    addon = tmp_path / "debug.addon.efi"
    build_addon("rdforge.addon_marker=1", addon, key=vendor_keys[0], cert=vendor_keys[1])
    cred = tmp_path / "rdforge.test.cred"
    cred.write_bytes(creds.armor(creds.encrypt("rdforge.test", b"hello")))
    res = _boot_to_root(BootOptions(uki=uki, esp_extra=(addon, sysext, cred), echo=False,
                                    timeout=300))
    assert "EFI stub: Loaded initrd" in res.console
    assert re.search(r"Kernel command line: .*rdforge\.addon_marker=1", res.console)
    assert "Received untrusted credentials: rdforge.test" in res.console
    assert "Using extensions 'ukimark.sysext.raw'" in res.console
    assert "RDFORGE-UKI-SYSEXT" in res.console


def test_secure_boot_runs_the_signed_uki_and_the_kernel_trusts_db_for_sysexts(
        default_build: Path, vendor_keys: tuple[Path, Path], tmp_path: Path) -> None:
    """With the vendor certificate in db, firmware runs the signed UKI, Linux puts the
    certificate in its platform keyring, and dm-verity checks a sysext's signature in the
    kernel: this initrd has no /etc/verity.d, so no other path could accept it. The UKI's
    .ucode section (AMD's microcode, small) reaches the kernel before the initrd."""
    from rdforge.outputs import microcode

    ucode = tmp_path / "amd.cpio"
    ucode.write_bytes(microcode.early_cpio({"AuthenticAMD": b"DMA\0 not real microcode"}, 0))
    uki, sysext = _signed_uki_and_sysext(default_build, vendor_keys, tmp_path, ucode)
    res = _boot_to_root(BootOptions(uki=uki, esp_extra=(sysext,), secure_boot_cert=vendor_keys[1],
                                    echo=False, timeout=300))
    assert "secureboot: Secure boot enabled" in res.console
    assert re.search(r"integrity: Loaded X\.509 cert 'rdforge test vendor", res.console)
    assert "RDFORGE-UKI-SYSEXT /kernel/x86/microcode/AuthenticAMD.bin" in res.console
    assert "Root hash verification failed" not in res.console


def test_secure_boot_refuses_an_unsigned_uki(default_build: Path, vendor_keys: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    uki = tmp_path / "unsigned.efi"
    build_uki(UkiOptions(initrd=default_build, output=uki, cmdline="console=ttyS0"))
    res = boot(BootOptions(uki=uki, secure_boot_cert=vendor_keys[1], echo=False, timeout=120))
    assert not res.ok
    assert "refused the boot loader" in res.reason, res.reason
    assert "Linux version" not in res.console


PCR_UNIT = """[Unit]
DefaultDependencies=no
After=systemd-pcrphase-initrd.service
[Service]
Type=oneshot
ExecStart=/bin/bash -c 'echo "RDFORGE-PCR11 $(</sys/class/tpm/tpm0/pcr-sha256/11)" > /dev/console'
"""


def test_pcr11_in_the_initrd_is_the_value_the_signed_policy_names(
        default_build: Path, vendor_keys: tuple[Path, Path], tmp_path: Path) -> None:
    """systemd-stub measures the UKI's sections into PCR 11 and systemd-pcrphase-initrd adds
    `enter-initrd`; a unit from credentials then reads PCR 11 from the kernel. It must be the
    value rdforge predicted, and the .pcrsig policy for that phase must name it."""
    uki = tmp_path / "measured.efi"
    build_uki(UkiOptions(initrd=default_build, output=uki, pcr_key=vendor_keys[0],
                         cmdline=f"console=ttyS0 panic=-1 root=LABEL={LABEL} rw"))
    unit, dropin = initrd_unit_credentials(tmp_path, "rdforge-pcr.service", PCR_UNIT)
    res = _boot_to_root(BootOptions(uki=uki, esp_extra=(unit, dropin), tpm_state=tmp_path / "tpm",
                                    echo=False, timeout=300))
    # systemd in the initrd sees a measured UKI (through EFI variables) and runs the phase.
    assert "Finished systemd-pcrphase-initrd.service" in res.console, res.console[-3000:]
    m = re.search(r"RDFORGE-PCR11 ([0-9A-Fa-f]{64})", res.console)
    assert m, res.console[-3000:]
    data = uki.read_bytes()
    predicted = pcrsig.predict(pcrsig.measured_sections(data))["enter-initrd"]
    assert m.group(1).lower() == predicted.hex()
    signed = PE.parse(data).section(".pcrsig")
    assert signed is not None
    policies = [e["pol"] for e in json.loads(signed.data(data))["sha256"]]
    assert tpm2.policy_pcr({11: predicted}).hex() == policies[0]


def test_uki_with_no_root_on_its_command_line_finds_the_discoverable_root_partition(
        default_build: Path, tmp_path: Path) -> None:
    # The Discoverable Partitions Specification: the ESP the UKI came from (systemd-stub sets
    # LoaderDevicePartUUID) and, on the same disk, a partition typed as the x86-64 root.
    uki = tmp_path / "vmlinuz.efi"
    build_uki(UkiOptions(initrd=default_build, output=uki, cmdline="console=ttyS0 panic=-1 rw"))
    res = _boot_to_root(BootOptions(uki=uki, gpt_auto=True, echo=False, timeout=300))
    assert not re.search(r"Kernel command line: .*\broot=", res.console)
    assert "Found device dev-gpt\\x2dauto\\x2droot.device" in res.console, res.console[-3000:]
    assert re.search(r"EXT4-fs \(vda2\): mounted", res.console), res.console[-3000:]
