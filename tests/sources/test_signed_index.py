"""Signed archive metadata: a local file:// archive signed with a throwaway key; an expired
Valid-Until is refused, an unexpired one passes the signature stage."""

from __future__ import annotations

import datetime as dt
import hashlib
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _archive(tmp: Path, valid_until: dt.datetime) -> tuple[Path, Path]:
    home = tmp / "gnupg"
    home.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "rdforge test archive <archive@example.org>",
                    "rsa2048", "sign", "never"], env=env, check=True, capture_output=True)
    keyring = tmp / "archive.gpg"
    keyring.write_bytes(subprocess.run([*gpg, "--export"], env=env, check=True,
                                       capture_output=True).stdout)
    pk = tmp / "mirror/dists/trixie/main/binary-amd64/Packages.xz"
    pk.parent.mkdir(parents=True)
    pk.write_bytes(lzma.compress(b""))
    data = pk.read_bytes()
    fmt = "%a, %d %b %Y %H:%M:%S UTC"
    release = (f"Origin: Test\nSuite: stable\nCodename: trixie\n"
               f"Date: {(valid_until - dt.timedelta(days=7)).strftime(fmt)}\n"
               f"Valid-Until: {valid_until.strftime(fmt)}\n"
               "Architectures: amd64\nComponents: main\nSHA256:\n"
               f" {hashlib.sha256(data).hexdigest()} {len(data)} main/binary-amd64/Packages.xz\n")
    (tmp / "Release").write_text(release)
    subprocess.run([*gpg, "--clearsign", "--output", str(tmp / "mirror/dists/trixie/InRelease"),
                    str(tmp / "Release")], env=env, check=True, capture_output=True)
    return tmp / "mirror", keyring


def _build(mirror: Path, keyring: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", "build", "-q", "--mirror",
                           f"file://{mirror}", "--keyring", str(keyring), "-o",
                           str(tmp / "initrd.img"), "--lock", str(tmp / "rdforge.lock")],
                          capture_output=True, text=True,
                          env=dict(os.environ, RDFORGE_CACHE=str(tmp / "cache")))


def test_expired_valid_until_is_refused(tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    mirror, keyring = _archive(tmp_path, past)
    r = _build(mirror, keyring, tmp_path)
    assert r.returncode != 0
    assert f"InRelease expired on {past:%Y-%m-%d}" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "initrd.img").exists()


def test_unexpired_index_is_accepted_and_read(tmp_path: Path) -> None:
    mirror, keyring = _archive(tmp_path, dt.datetime.now(dt.UTC) + dt.timedelta(days=7))
    r = _build(mirror, keyring, tmp_path)
    # Signature and date pass; the (empty) index then lacks the packages.
    assert r.returncode != 0 and "expired" not in r.stderr and "signature" not in r.stderr
    assert "not in the archive" in r.stderr, r.stderr
