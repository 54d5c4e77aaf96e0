"""Sealing to a TPM without the TPM: the structures, the policy digest, and the duplicate
opened again the way TPM2_Import opens it (the boot test has systemd do it on a swtpm)."""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from rdforge.errors import ConfigError
from rdforge.formats import tpm2
from rdforge.formats.tpm2 import CFB, Reader
from rdforge.outputs.credential import parse_pcrs

# An SRK as `systemd-analyze srk` wrote it (TPM2B_PUBLIC) from a swtpm; systemd printed its
# fingerprint as 18321ce7fda0f9a9bf28520b33043ba5c45d7fc0a716740d833b72ee6112ed82.
SRK = (Path(__file__).parent.parent / "data" / "swtpm-srk.tpm2b_public").read_bytes()


def test_reads_a_storage_key_as_systemd_writes_it() -> None:
    p = tpm2.parse_public(SRK)
    assert (p.curve, p.sym_bits) == (tpm2.ECC_NIST_P256, 128)
    assert p.fingerprint == "18321ce7fda0f9a9bf28520b33043ba5c45d7fc0a716740d833b72ee6112ed82"
    with pytest.raises(tpm2.TPMError):
        tpm2.parse_public(SRK[:-3])
    with pytest.raises(tpm2.TPMError, match="template"):
        # The template (empty unique) is not a key.
        tpm2.parse_public(tpm2.b2(tpm2.primary_template()))


def test_pcr_policy_digest_is_the_one_systemd_computes() -> None:
    # systemd-creds 257 sealed to PCR 7 of a fresh swtpm (all zeros) with this policy hash.
    assert tpm2.policy_pcr({7: bytes(32)}).hex() == \
        "8b5682d81b29435d08d79278150611dc7e5923b2fefcce684a09577b40130a8b"
    assert tpm2.policy_pcr({}) == bytes(32)  # no PCRs: the empty policy


def test_pcr_syntax() -> None:
    assert parse_pcrs("7+11") == {7: None, 11: None}
    assert parse_pcrs("15:sha256=" + "ab" * 32) == {15: b"\xab" * 32}
    for bad in ("24", "7:sha1=00", "x", "7:sha256=abc"):
        with pytest.raises(ConfigError):
            parse_pcrs(bad)


def _storage_key() -> tuple[ec.EllipticCurvePrivateKey, tpm2.StoragePublic]:
    priv = ec.generate_private_key(ec.SECP256R1())
    n = priv.public_key().public_numbers()
    area = tpm2.primary_template()[:-4] + tpm2.b2(n.x.to_bytes(32, "big")) + \
        tpm2.b2(n.y.to_bytes(32, "big"))
    return priv, tpm2.parse_public(tpm2.b2(area))


def _import(priv: ec.EllipticCurvePrivateKey, parent: tpm2.StoragePublic,
            sealed: tpm2.Sealed) -> tuple[bytes, bytes]:
    """What TPM2_Import and TPM2_Unseal do with the duplicate: (secret, the public area)."""
    point = Reader(Reader(sealed.seed).b2())
    ex, ey = point.b2(), point.b2()
    eph = ec.EllipticCurvePublicNumbers(int.from_bytes(ex, "big"), int.from_bytes(ey, "big"),
                                        ec.SECP256R1()).public_key()
    seed = tpm2.kdfe(priv.exchange(ec.ECDH(), eph), "DUPLICATE", ex, parent.x, 256)
    area = Reader(sealed.public).b2()
    name = struct.pack(">H", tpm2.ALG_SHA256) + hashlib.sha256(area).digest()
    dup = Reader(Reader(sealed.private).b2())
    outer = dup.b2()
    encrypted = dup.data[dup.pos:]
    want = hmac.new(tpm2.kdfa(seed, "INTEGRITY", b"", 256), encrypted + name, "sha256").digest()
    if not hmac.compare_digest(outer, want):
        raise tpm2.TPMError("integrity check failed")
    dec = Cipher(algorithms.AES(tpm2.kdfa(seed, "STORAGE", name, 128)), CFB(bytes(16))).decryptor()
    sens = Reader(Reader(dec.update(encrypted) + dec.finalize()).b2())
    assert sens.u16() == tpm2.ALG_KEYEDHASH
    assert sens.b2() == b""  # no auth value
    obfuscate, secret = sens.b2(), sens.b2()
    # The public area commits to the secret as the TPM checks on load.
    assert area.endswith(tpm2.b2(hashlib.sha256(obfuscate + secret).digest()))
    return secret, area


def test_sealed_duplicate_opens_with_the_parents_private_key_only() -> None:
    priv, parent = _storage_key()
    policy = tpm2.policy_pcr({15: bytes(32)})
    sealed = tpm2.seal(parent, b"s" * 32, policy)
    secret, area = _import(priv, parent, sealed)
    assert secret == b"s" * 32
    r = Reader(area)
    assert (r.u16(), r.u16(), r.u32()) == (tpm2.ALG_KEYEDHASH, tpm2.ALG_SHA256, 0)
    assert r.b2() == policy
    assert sealed.blob == sealed.private + sealed.public + sealed.seed
    other, _ = _storage_key()
    with pytest.raises((tpm2.TPMError, AssertionError)):
        _import(other, parent, sealed)
    tampered = tpm2.Sealed(sealed.private[:-1] + bytes([sealed.private[-1] ^ 1]),
                           sealed.public, sealed.seed)
    with pytest.raises(tpm2.TPMError, match="integrity"):
        _import(priv, parent, tampered)
