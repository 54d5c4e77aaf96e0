"""OpenPGP signatures checked by gpgv against a distribution's keyring: apt's clearsigned
InRelease, and the detached signatures of rpm-md (repomd.xml.asc, an rpm header's)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from rdforge.errors import SignatureError


def _gpgv(keyring: Path, what: str) -> str:
    if not keyring.is_file():
        raise SignatureError(f"{what}: keyring {keyring} does not exist")
    gpgv = shutil.which("gpgv")
    if not gpgv:
        raise SignatureError(f"{what}: gpgv is not installed, cannot verify the signature")
    return gpgv


def _refused(r: subprocess.CompletedProcess[str], what: str) -> SignatureError:
    msg = " ".join(line for line in r.stderr.splitlines()[-2:] if line).strip()
    return SignatureError(f"{what}: bad or missing signature ({msg or 'gpgv failed'})")


def verify_clearsigned(signed: bytes, keyring: Path, what: str) -> bytes:
    """Check a clearsigned document and return only the signed text."""
    gpgv = _gpgv(keyring, what)
    with tempfile.TemporaryDirectory(prefix="rdforge-gpgv-") as tmp:
        src = Path(tmp, "InRelease")
        out = Path(tmp, "Release")
        src.write_bytes(signed)
        r = subprocess.run([gpgv, "--quiet", "--keyring", str(keyring.resolve()), "--output", str(out),
                            str(src)], capture_output=True, encoding="utf-8", errors="replace")
        if r.returncode != 0 or not out.exists():
            raise _refused(r, what)
        return out.read_bytes()


def verify_detached(signature: bytes, data: bytes, keyring: Path, what: str) -> None:
    """Check a detached signature (binary or ASCII-armored) over data."""
    gpgv = _gpgv(keyring, what)
    with tempfile.TemporaryDirectory(prefix="rdforge-gpgv-") as tmp:
        sig, dat = Path(tmp, "sig"), Path(tmp, "data")
        sig.write_bytes(signature)
        dat.write_bytes(data)
        r = subprocess.run([gpgv, "--quiet", "--keyring", str(keyring.resolve()), str(sig), str(dat)],
                           capture_output=True, encoding="utf-8", errors="replace")
        if r.returncode != 0:
            raise _refused(r, what)
