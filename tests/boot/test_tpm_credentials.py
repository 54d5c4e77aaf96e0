"""Credentials sealed to a TPM (swtpm) by `rdforge credential --encrypt tpm2`: systemd in the
initrd unseals them on that TPM, and refuses on a fresh TPM or when the PCR policy does not
hold. What is sealed is the root password, so the proof is an emergency login."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import initrd_unit_credentials, seal_to_swtpm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rdforge.outputs.uki import UkiOptions, build_uki
from rdforge.vm.boot import BootOptions, BootResult, boot, default_root
from rdforge.vm.rootfs import LABEL

pytestmark = [pytest.mark.boot, pytest.mark.integration]
PASSWORD = "tpm-bound-secret"
NAME = "passwd.hashed-password.root"
EMERGENCY = dict(root_arg="root=LABEL=does-not-exist",
                 append="systemd.default_device_timeout_sec=15")
LOGIN = (("password for system maintenance", PASSWORD + "\n"), ("# ", "echo RDFORGE-$((6*7))\n"))


def _boot(initrd: Path, state: Path, cred: Path, expect: str, **kw: object) -> BootResult:
    opts = BootOptions(initrd=initrd, echo=False, timeout=240, tpm_state=state,
                       credentials=(cred,), expect=expect, stop_on_fail=False,
                       **EMERGENCY, **kw)  # type: ignore[arg-type]
    opts.root_image = default_root(opts)
    return boot(opts)


def _seal(state: Path, out: Path, *args: str, name: str = NAME,
          value: str | None = None) -> subprocess.CompletedProcess[str]:
    """Sealed on the swtpm that keeps its state in `state`; the value is the root password's
    hash unless given."""
    if value is None:
        value = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True,
                               text=True, check=True).stdout.strip()
    return seal_to_swtpm(state, name, value, out, *args)


def test_credential_sealed_to_the_tpm(default_build: Path, tmp_path: Path) -> None:
    state = tmp_path / "tpm"
    # The file name is the credential's name to systemd.
    good, wrong_pcr = tmp_path / "good" / f"{NAME}.cred", tmp_path / "wrong" / f"{NAME}.cred"
    good.parent.mkdir()
    wrong_pcr.parent.mkdir()
    # PCR 15: nothing extends it in this initrd, so its value now is its value at boot.
    r = _seal(state, good, "--tpm2-pcrs", "15")
    assert r.returncode == 0, r.stderr
    r = _seal(state, wrong_pcr, "--tpm2-pcrs", "15:sha256=" + "11" * 32)
    assert r.returncode == 0, r.stderr
    show = subprocess.run([sys.executable, "-m", "rdforge.cli", "credential", "--show", str(good)],
                          capture_output=True, text=True)
    assert show.returncode != 0 and "tpm2" in show.stderr  # not readable off the machine
    # 1. The TPM it was sealed to: the initrd unseals it, the emergency shell opens.
    res = _boot(default_build, state, good, "RDFORGE-42", console_input=LOGIN)
    assert res.ok, res.reason + res.console[-3000:]
    # 2. A fresh TPM cannot unseal it: the boot says so and root stays locked.
    res = _boot(default_build, tmp_path / "fresh", good, "the root account is locked")
    assert res.ok, res.reason + res.console[-3000:]
    assert "Failed to start rdforge-root-pass" in res.console, res.console[-3000:]
    # 3. The right TPM, but PCR 15 does not hold the value the policy names.
    res = _boot(default_build, state, wrong_pcr, "the root account is locked")
    assert res.ok, res.reason + res.console[-3000:]
    assert "Failed to start rdforge-root-pass" in res.console, res.console[-3000:]
    shutil.rmtree(tmp_path / "fresh", ignore_errors=True)


PK_NAME = "rdforge.pk-secret"
PK_UNIT = f"""[Unit]
Description=Signed-policy credential
[Service]
Type=oneshot
ImportCredential={PK_NAME}
ExecStart=/usr/bin/bash -c "echo RDFORGE-PK-[$(<$CREDENTIALS_DIRECTORY/{PK_NAME})] > /dev/console"
"""


def test_credential_bound_to_pcr_policies_signed_for_the_uki(
        default_build: Path, vendor_keys: tuple[Path, Path], tmp_path: Path) -> None:
    """`--tpm2-public-key`: sealed under PolicyAuthorize by the UKI's PCR signing key. Under
    the UKI whose PCR 11 policies that key signed, systemd in the initrd unseals it (with the
    .pcrsig that systemd-stub hands over); sealed to another key's policies, it is refused."""
    state = tmp_path / "tpm"
    other_key = tmp_path / "other.pem"
    other_key.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    public = tmp_path / "pcr-public.pem"
    public.write_bytes(serialization.load_pem_private_key(vendor_keys[0].read_bytes(), None)
                       .public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    creds = {}
    for label, key in (("good", public), ("other", other_key)):
        out = tmp_path / label / f"{PK_NAME}.cred"
        out.parent.mkdir()
        r = _seal(state, out, "--tpm2-public-key", str(key), name=PK_NAME, value=f"{label}-42")
        assert r.returncode == 0, r.stderr
        creds[label] = out
    uki = tmp_path / "measured.efi"
    build_uki(UkiOptions(initrd=default_build, output=uki, pcr_key=vendor_keys[0],
                         cmdline=f"console=ttyS0 panic=-1 root=LABEL={LABEL} rw"))
    unit, dropin = initrd_unit_credentials(tmp_path, "rdforge-pk.service", PK_UNIT)
    for label, expect_ok in (("good", True), ("other", False)):
        opts = BootOptions(uki=uki, esp_extra=(unit, dropin, creds[label]), tpm_state=state,
                           echo=False, timeout=300, stop_on_fail=False)
        opts.root_image = default_root(opts)
        res = boot(opts)
        assert res.ok, res.reason + res.console[-3000:]
        assert "Finished systemd-pcrphase-initrd.service" in res.console, res.console[-3000:]
        if expect_ok:
            assert "RDFORGE-PK-[good-42]" in res.console, res.console[-4000:]
        else:  # not decrypted: the unit gets no credential, or does not start at all
            assert "other-42" not in res.console
            assert ("RDFORGE-PK-[]" in res.console
                    or "Failed to start rdforge-pk.service" in res.console), res.console[-4000:]
