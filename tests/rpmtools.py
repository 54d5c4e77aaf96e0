"""rpm's own tools for the tests: packages made by rpmbuild, signed by rpmsign, repositories
indexed by createrepo_c, all with a throwaway OpenPGP key."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SigningKey:
    env: dict[str, str]  # the environment with GNUPGHOME set, for gpg and rpmsign
    keyring: Path  # the public key, binary (gpgv's keyring)
    armored: Path  # the public key, ASCII-armored (rpmkeys --import, dnf's gpgkey)


def make_key(home: Path, uid: str = "rdforge test <test@rdforge.invalid>") -> SigningKey:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key", uid,
                    "rsa2048", "sign", "never"], check=True, capture_output=True, env=env)
    keyring, armored = home / "key.gpg", home / "key.asc"
    for dest, armor in ((keyring, []), (armored, ["--armor"])):
        dest.write_bytes(subprocess.run(["gpg", *armor, "--export"], check=True,
                                        capture_output=True, env=env).stdout)
    return SigningKey(env, keyring, armored)


def build_rpm(spec: str, top: Path, payload: str = "w19.zstdio") -> Path:
    """rpmbuild -bb of the spec text; the one binary package it makes."""
    top.mkdir(parents=True, exist_ok=True)
    (top / "pkg.spec").write_text(spec)
    subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
                    "--define", f"_binary_payload {payload}", "--define", "_build_id_links none",
                    str(top / "pkg.spec")], check=True, capture_output=True)
    (rpm,) = (top / "RPMS").glob("*/*.rpm")
    return rpm


def sign_rpm(rpm: Path, key: SigningKey) -> Path:
    subprocess.run(["rpmsign", "--addsign", "--define", "_gpg_name rdforge test",
                    "--define", f"__gpg {shutil.which('gpg')}", str(rpm)], check=True,
                   capture_output=True, env=key.env, stdin=subprocess.DEVNULL)
    return rpm


def make_repo(repo: Path, key: SigningKey | None, compress: str = "xz") -> Path:
    """createrepo_c over repo/Packages, and repomd.xml signed (repomd.xml.asc) by key.
    (bookworm's createrepo_c 0.17 writes xz, gz or bz2 metadata, not yet Fedora's zstd.)"""
    subprocess.run(["createrepo_c", "--quiet", "--no-database", "--general-compress-type",
                    compress, str(repo)], check=True, capture_output=True)
    if key is not None:
        subprocess.run(["gpg", "--batch", "--yes", "--armor", "--detach-sign", "--output",
                        str(repo / "repodata" / "repomd.xml.asc"),
                        str(repo / "repodata" / "repomd.xml")], check=True, capture_output=True,
                       env=key.env)
    return repo
