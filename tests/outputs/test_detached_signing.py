"""Signing without the key on the build machine: an unsigned image, a detached Authenticode
signature made elsewhere, attached later; interchangeable with sbsign --detached and sbattach,
and sbverify accepts the result."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.outputs.uki import build_addon

pytestmark = pytest.mark.integration


def _rdforge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", *args], capture_output=True,
                          text=True)


def _sbverify(image: Path, cert: Path) -> bool:
    return subprocess.run(["sbverify", "--cert", str(cert), str(image)],
                          capture_output=True).returncode == 0


@pytest.fixture()
def unsigned(tmp_path: Path) -> Path:
    if shutil.which("sbsign") is None:
        pytest.skip("sbsigntool is not installed")
    out = tmp_path / "debug.addon.efi"
    build_addon("rdforge.detached=1", out)
    return out


def test_a_signing_services_detached_signature_is_attached(unsigned: Path, tmp_path: Path,
                                                           vendor_keys: tuple[Path, Path]) -> None:
    key, cert = vendor_keys
    sig = tmp_path / "service.sig"  # what the signing service returns: sbsign's
    subprocess.run(["sbsign", "--detached", "--key", str(key), "--cert", str(cert), "--output",
                    str(sig), str(unsigned)], check=True, capture_output=True)
    assert not _sbverify(unsigned, cert)
    r = _rdforge("attach", str(unsigned), str(sig), "-o", str(tmp_path / "signed.efi"))
    assert r.returncode == 0, r.stderr
    assert _sbverify(tmp_path / "signed.efi", cert)


def test_rdforges_detached_signature_is_attached_by_sbattach(unsigned: Path, tmp_path: Path,
                                                             vendor_keys: tuple[Path, Path]) -> None:
    key, cert = vendor_keys
    r = _rdforge("sign", "--detached", "--key", str(key), "--cert", str(cert), str(unsigned),
                 "-o", str(tmp_path / "ours.sig"))
    assert r.returncode == 0, r.stderr
    theirs = tmp_path / "sbattach.efi"
    shutil.copyfile(unsigned, theirs)
    subprocess.run(["sbattach", "--attach", str(tmp_path / "ours.sig"), str(theirs)], check=True,
                   capture_output=True)
    assert _sbverify(theirs, cert)
    # detached then attached is the same as signed in one go
    r = _rdforge("attach", str(unsigned), str(tmp_path / "ours.sig"), "-o", str(tmp_path / "a.efi"))
    assert r.returncode == 0, r.stderr
    r = _rdforge("sign", "--key", str(key), "--cert", str(cert), str(unsigned), "-o",
                 str(tmp_path / "b.efi"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.efi").read_bytes() == (tmp_path / "b.efi").read_bytes()
    assert _sbverify(tmp_path / "a.efi", cert)


def test_a_signature_for_another_image_is_refused(unsigned: Path, tmp_path: Path,
                                                  vendor_keys: tuple[Path, Path]) -> None:
    key, cert = vendor_keys
    other = tmp_path / "other.addon.efi"
    build_addon("rdforge.something=else", other)
    r = _rdforge("sign", "--detached", "--key", str(key), "--cert", str(cert), str(other),
                 "-o", str(tmp_path / "other.sig"))
    assert r.returncode == 0, r.stderr
    r = _rdforge("attach", str(unsigned), str(tmp_path / "other.sig"), "-o", str(tmp_path / "x.efi"))
    assert r.returncode == 1 and "not over this image" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "x.efi").exists()
    (tmp_path / "junk.sig").write_bytes(b"junk")
    r = _rdforge("attach", str(unsigned), str(tmp_path / "junk.sig"))
    assert r.returncode == 1 and "not a detached Authenticode signature" in r.stderr


def test_a_key_in_a_pkcs11_token_signs_without_leaving_it(tmp_path: Path,
                                                          vendor_keys: tuple[Path, Path]) -> None:
    """SoftHSM stands in for the HSM: the key is imported into the token and the signing key
    rdforge is given is its pkcs11: URI."""
    module = Path("/usr/lib/softhsm/libsofthsm2.so")
    if not module.exists() or shutil.which("pkcs11-tool") is None or shutil.which("sbsign") is None:
        pytest.skip("softhsm2, opensc and sbsigntool are needed")
    key, cert = vendor_keys
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    env = {"SOFTHSM2_CONF": str(conf), "PKCS11_MODULE_PATH": str(module)}
    import os

    full = {**os.environ, **env}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "rdforge", "--pin",
                    "1234", "--so-pin", "5678"], check=True, capture_output=True, env=full)
    der = tmp_path / "key.der"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", str(key), "-outform", "DER",
                    "-out", str(der)], check=True, capture_output=True)
    subprocess.run(["pkcs11-tool", "--module", str(module), "--token-label", "rdforge", "--login",
                    "--pin", "1234", "--write-object", str(der), "--type", "privkey", "--id", "01",
                    "--label", "vendor"], check=True, capture_output=True, env=full)
    der.unlink()
    uri = "pkcs11:token=rdforge;object=vendor;type=private;pin-value=1234"
    out = tmp_path / "hsm.addon.efi"
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "addon", "--cmdline", "rdforge.hsm=1",
                        "--key", uri, "--cert", str(cert), "-o", str(out)], capture_output=True,
                       text=True, env=full)
    assert r.returncode == 0, r.stderr
    assert _sbverify(out, cert)
    wrong = uri.replace("pin-value=1234", "pin-value=0000")
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "addon", "--cmdline", "x=1", "--key",
                        wrong, "--cert", str(cert), "-o", str(tmp_path / "no.efi")],
                       capture_output=True, text=True, env=full)
    assert r.returncode == 1 and "signing with pkcs11:token=rdforge" in r.stderr
    assert "0000" not in r.stderr and not (tmp_path / "no.efi").exists()


def test_a_signed_image_is_re_signed_with_another_key(unsigned: Path, tmp_path: Path,
                                                      vendor_keys: tuple[Path, Path]) -> None:
    from rdforge.keys import genkey

    key, cert = vendor_keys
    key2, cert2 = genkey("machine owner", tmp_path / "mok")
    subprocess.run(["sbsign", "--key", str(key), "--cert", str(cert), "--output",
                    str(tmp_path / "theirs.efi"), str(unsigned)], check=True, capture_output=True)
    r = _rdforge("sign", "--key", str(key2), "--cert", str(cert2), str(tmp_path / "theirs.efi"),
                 "-o", str(tmp_path / "x.efi"))
    assert r.returncode == 1 and "signed already" in r.stderr
    r = _rdforge("sign", "--replace", "--key", str(key2), "--cert", str(cert2),
                 str(tmp_path / "theirs.efi"), "-o", str(tmp_path / "mine.efi"))
    assert r.returncode == 0, r.stderr
    assert _sbverify(tmp_path / "mine.efi", cert2) and not _sbverify(tmp_path / "mine.efi", cert)
