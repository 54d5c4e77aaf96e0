"""rdforge's Authenticode signer against sbverify (sbsigntool), on a real EFI stub."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rdforge.formats import authenticode, pe
from rdforge.keys import genkey, load_signing_key
from rdforge.outputs.uki import ADDON_SBAT, stub_from_archive

pytestmark = pytest.mark.integration


def _image() -> bytes:
    stub, _ = stub_from_archive("trixie", "amd64", True, False)
    return pe.build_from_stub(stub, [(".cmdline", b"console=ttyS0"),
                                     (".sbat", pe.merge_sbat([], ADDON_SBAT))])


def _sbverify(path: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sbverify", "--cert", str(cert), str(path)], capture_output=True,
                          text=True)


def test_sbverify_accepts_our_signature_and_rejects_changes(tmp_path: Path) -> None:
    key, cert = genkey("Test Signer", tmp_path / "k")
    signer = load_signing_key(key, cert)
    image = _image()
    signed = authenticode.sign(image, signer)
    assert signed == authenticode.sign(image, signer)  # no signing time: deterministic
    (tmp_path / "s.efi").write_bytes(signed)
    r = _sbverify(tmp_path / "s.efi", cert)
    assert r.returncode == 0, r.stdout + r.stderr
    assert pe.signers(signed) == ["CN=Test Signer"]
    other = genkey("Other", tmp_path / "o")[1]
    assert _sbverify(tmp_path / "s.efi", other).returncode != 0
    tampered = bytearray(signed)
    sec = pe.PE.parse(signed).section(".cmdline")
    assert sec is not None
    tampered[sec.raw_pointer] ^= 1
    (tmp_path / "t.efi").write_bytes(tampered)
    assert _sbverify(tmp_path / "t.efi", cert).returncode != 0
    with pytest.raises(Exception, match="signed already"):
        authenticode.sign(signed, signer)


def test_digest_skips_checksum_and_certificate_entry() -> None:
    image = bytearray(_image())
    d = authenticode.image_digest(bytes(image))
    p = pe.PE.parse(bytes(image))
    image[p.opt_offset + 64] ^= 0xFF  # the checksum is not covered
    assert authenticode.image_digest(bytes(image)) == d
    image[p.opt_offset + 8] ^= 0xFF  # any other header field is
    assert authenticode.image_digest(bytes(image)) != d
