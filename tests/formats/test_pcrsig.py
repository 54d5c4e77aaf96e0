"""PCR 11 prediction for UKIs. The expected values were printed by trixie's systemd-measure 257
(`systemd-measure calculate --linux=F --osrel=G` with F holding "foo" and G "bar\\n"); whole
UKIs are compared with ukify + systemd-measure in tests/outputs/test_uki.py."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from rdforge.errors import FormatError
from rdforge.formats import pcrsig, tpm2

SECTIONS = {".osrel": b"bar\n", ".linux": b"foo"}


def test_prediction_matches_systemd_measure() -> None:
    sha256 = pcrsig.predict(SECTIONS, "sha256")
    assert sha256["enter-initrd"].hex() == \
        "2105a1224adef9f9a438cc450309edd7f56323f08f27a0e5bc0529e58d40caca"
    assert sha256["enter-initrd:leave-initrd:sysinit:ready"].hex() == \
        "4d23a01d7a53159ec10df80c62878f2b8553ac976e8c5bd02fc1cb3c577bbcae"
    assert pcrsig.predict(SECTIONS, "sha1")["enter-initrd:leave-initrd"].hex() == \
        "3f71314a1f5efaba99dbf58006dc6e3cd6569bae"


def test_measurement_follows_the_stubs_order_not_the_files() -> None:
    swapped = {".linux": b"bar\n", ".osrel": b"foo"}
    assert pcrsig.predict(dict(reversed(SECTIONS.items()))) == pcrsig.predict(SECTIONS)
    assert pcrsig.predict(swapped) != pcrsig.predict(SECTIONS)


def test_signed_policies_verify_with_the_public_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    doc = json.loads(pcrsig.sign(SECTIONS, key))
    assert list(doc) == ["sha1", "sha256", "sha384", "sha512"]
    pkfp = doc["sha256"][0]["pkfp"]
    for bank, entries in doc.items():
        values = list(pcrsig.predict(SECTIONS, bank).values())
        assert len(entries) == len(values) == 4
        for entry, value in zip(entries, values, strict=True):
            assert entry["pcrs"] == [11] and entry["pkfp"] == pkfp
            pol = bytes.fromhex(entry["pol"])
            assert pol == tpm2.policy_pcr({11: value}, pcrsig.BANKS[bank][1])
            key.public_key().verify(base64.b64decode(entry["sig"]), pol, padding.PKCS1v15(),
                                    pcrsig.BANKS[bank][2])
    pem = pcrsig.public_key_pem(key)
    loaded = serialization.load_pem_public_key(pem)
    assert isinstance(loaded, rsa.RSAPublicKey)
    assert loaded.public_numbers() == key.public_key().public_numbers()
    with pytest.raises(InvalidSignature):
        key.public_key().verify(base64.b64decode(doc["sha256"][0]["sig"]), bytes(32),
                                padding.PKCS1v15(), hashes.SHA256())


def test_a_section_the_stub_does_not_measure_is_refused() -> None:
    with pytest.raises(FormatError, match=".pcrsig"):
        pcrsig.predict({".pcrsig": b"{}", ".linux": b"x"})
