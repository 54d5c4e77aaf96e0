"""Credentials sealed to a TPM (swtpm) by `rdforge credential --encrypt tpm2`: systemd in the
initrd unseals them on that TPM, and refuses on a fresh TPM or when the PCR policy does not
hold. What is sealed is the root password, so the proof is an emergency login."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rdforge.vm.boot import BootOptions, BootResult, boot, default_root, start_swtpm

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


def _seal(state: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    pw_hash = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True,
                             text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="rdforge-swtpm-") as tmp:
        sock = Path(tmp, "tpm.sock")
        tpm = start_swtpm(state, sock, server=True)
        try:
            return subprocess.run(
                [sys.executable, "-m", "rdforge.cli", "credential", NAME, "--value", pw_hash,
                 "--encrypt", "tpm2", "--tpm2-device", f"swtpm:path={sock}", *args, "-o", str(out)],
                capture_output=True, text=True)
        finally:
            tpm.terminate()
            tpm.wait(timeout=10)


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
