"""TPM-bound credentials against a software TPM, without a VM: rdforge unseals what the
host's systemd-creds seals to the TPM, and what rdforge seals itself (imported first); a
fresh TPM and a PCR value other than the policy's are refused with the reason."""

from __future__ import annotations

import hashlib
import json
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
    r = _cli("inspect", str(cred), "--json")  # the header alone: no TPM, no secret
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["key"], info["tpm2_pcrs"], info["tpm2_bank"], info["name"]) == \
        ("tpm2", [7], "sha256", None)
    assert "sealed to PCRs: 7" in _cli("inspect", str(cred)).stdout


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
    assert r.returncode == 1 and "PCRs do not hold the values" in r.stderr
    other_sock = tmp_path / "other.sock"
    other = start_swtpm(tmp_path / "other", other_sock, server=True)
    try:
        r = _cli("credential", "--show", str(good), "--tpm2-device", f"swtpm:path={other_sock}")
    finally:
        other.terminate()
        other.wait(timeout=10)
    assert r.returncode == 1 and "not sealed to this TPM" in r.stderr


def test_signed_policy_digest_and_header_are_systemd_creds_ones(swtpm: tuple[Path, str],
                                                                 tmp_path: Path) -> None:
    """systemd-creds seals to a PCR signing key with the TPM computing the PolicyAuthorize
    digest (a trial session on the key it loaded); its credential stores that digest. rdforge
    computes the same digest for the same key, and lays out the same public-key header."""
    import base64
    import struct

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from rdforge.formats import creds, tpm2
    from rdforge.outputs.credential import pcr_public_key

    _, dev = swtpm
    key = rsa.generate_private_key(65537, 2048)
    pub = tmp_path / "pcr.pem"
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "in").write_bytes(VALUE)
    cred = tmp_path / "pk.cred"
    r = subprocess.run(["systemd-creds", "encrypt", "--with-key=tpm2-with-public-key",
                        f"--tpm2-device={dev}", f"--tpm2-public-key={pub}",
                        "--tpm2-public-key-pcrs=11", "--tpm2-pcrs=", "--name=foo",
                        str(tmp_path / "in"), str(cred)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    raw = base64.b64decode(cred.read_bytes())
    assert raw[:16] == creds.KEY_TPM2_PK.bytes
    at = (creds.MAIN.size + 12 + 7) // 8 * 8  # after the 12-byte IV, 8-aligned
    mask, _bank, _alg, blen, plen = creds.TPM2_HEADER.unpack_from(raw, at)
    start = at + creds.TPM2_HEADER.size
    theirs = raw[start + blen:start + blen + plen]
    pem, name, pk_mask = pcr_public_key(str(pub), "11")
    assert mask == 0 and theirs == tpm2.policy_authorize(name)
    pk_at = (start + blen + plen + 7) // 8 * 8
    their_mask, size = struct.unpack_from("<QI", raw, pk_at)
    assert (their_mask, pk_mask) == (1 << 11, 1 << 11)
    der = serialization.PublicFormat.SubjectPublicKeyInfo
    assert serialization.load_pem_public_key(raw[pk_at + 12:pk_at + 12 + size]).public_bytes(
        serialization.Encoding.DER, der) == key.public_key().public_bytes(
        serialization.Encoding.DER, der)
    assert pem == pub.read_bytes()  # the PEM as systemd-creds stores it
    r = _cli("inspect", str(cred), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["key"], info["tpm2_pcrs"], info["signed_policy_pcrs"]) == \
        ("tpm2 with a PCR signing key", [], [11])
    assert info["pcr_public_key_sha256"] == hashlib.sha256(pub.read_bytes()).hexdigest()
