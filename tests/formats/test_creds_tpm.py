"""TPM-bound credentials against a software TPM, without a VM: rdforge unseals what the
host's systemd-creds seals to the TPM, and what rdforge seals itself (imported first); a
fresh TPM and a PCR value other than the policy's are refused with the reason."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdforge.vm.boot import start_swtpm

pytestmark = pytest.mark.integration
VALUE = b"bound to this TPM"


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    state, sock = tmp_path / "tpm", tmp_path / "tpm.sock"
    proc = start_swtpm(state, sock, server=True)
    try:
        yield state, f"swtpm:path={sock}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", *args], capture_output=True,
                          text=True)


def _shown_sha(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    return dict(line.split(": ", 1) for line in r.stdout.splitlines())["sha256"]


def test_unseals_what_systemd_creds_seals(swtpm: tuple[Path, str], tmp_path: Path) -> None:
    _, dev = swtpm
    (tmp_path / "in").write_bytes(VALUE)
    cred = tmp_path / "foo.cred"
    # systemd-creds binds to PCR 7 by default.
    r = subprocess.run(["systemd-creds", "encrypt", "--with-key=tpm2", f"--tpm2-device={dev}",
                        "--name=foo", str(tmp_path / "in"), str(cred)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _shown_sha(_cli("credential", "--show", str(cred), "--tpm2-device", dev)) == \
        hashlib.sha256(VALUE).hexdigest()


def test_unseals_what_it_sealed_and_refuses_elsewhere(swtpm: tuple[Path, str],
                                                      tmp_path: Path) -> None:
    _, dev = swtpm
    good, wrong = tmp_path / "good.cred", tmp_path / "wrong.cred"
    for out, pcrs in ((good, "7+15"), (wrong, "15:sha256=" + "22" * 32)):
        r = _cli("credential", "foo", "--value", VALUE.decode(), "--encrypt", "tpm2",
                 "--tpm2-device", dev, "--tpm2-pcrs", pcrs, "-o", str(out))
        assert r.returncode == 0, r.stderr
    assert _shown_sha(_cli("credential", "--show", str(good), "--tpm2-device", dev)) == \
        hashlib.sha256(VALUE).hexdigest()
    r = _cli("credential", "--show", str(wrong), "--tpm2-device", dev)
    assert r.returncode == 2 and "PCRs do not hold the values" in r.stderr
    other_sock = tmp_path / "other.sock"
    other = start_swtpm(tmp_path / "other", other_sock, server=True)
    try:
        r = _cli("credential", "--show", str(good), "--tpm2-device", f"swtpm:path={other_sock}")
    finally:
        other.terminate()
        other.wait(timeout=10)
    assert r.returncode == 2 and "not sealed to this TPM" in r.stderr
