"""systemd credentials: rdforge's writer and reader against systemd-creds, both directions,
with the null key and with a host key; malformed input is refused with a clear error."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.formats import creds

# The host's systemd (252) spells the null key "tpm2-absent"; 257 calls it "null".
NULL_KEY_ARG = "--with-key=tpm2-absent"


def _systemd_version() -> int:
    out = subprocess.run(["systemd-creds", "--version"], capture_output=True, text=True).stdout
    return int(out.split()[1])


def _null_arg() -> str:
    return "--with-key=null" if _systemd_version() >= 256 else NULL_KEY_ARG


def test_systemd_creds_decrypts_ours_null_key(tmp_path: Path) -> None:
    f = tmp_path / "greeting.cred"
    f.write_bytes(creds.armor(creds.encrypt("greeting", b"hello\x00binary\xff", creds.KEY_NULL,
                                            timestamp_us=1_700_000_000_000_000)))
    r = subprocess.run(["systemd-creds", "decrypt", "--name=greeting", str(f), "-"],
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello\x00binary\xff"
    # The embedded name is authenticated: systemd refuses it under another name.
    r = subprocess.run(["systemd-creds", "decrypt", "--name=other", str(f), "-"], capture_output=True)
    assert r.returncode != 0 and b"does not match" in r.stderr


def test_we_decrypt_systemd_creds_null_key(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"s3cr3t value")
    subprocess.run(["systemd-creds", "encrypt", _null_arg(), "--name=foo", str(tmp_path / "in"),
                    str(tmp_path / "foo.cred")], check=True, capture_output=True)
    c = creds.decrypt((tmp_path / "foo.cred").read_bytes(), "foo")
    assert (c.kind, c.name, c.data) == ("null", "foo", b"s3cr3t value")
    with pytest.raises(creds.CredentialError, match="named 'foo', not 'bar'"):
        creds.decrypt((tmp_path / "foo.cred").read_bytes(), "bar")
    # inspect names it and its size, never its secret
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "inspect", str(tmp_path / "foo.cred"),
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["key"], info["name"], info["secret_size"]) == ("null", "foo", 12)
    assert "s3cr3t" not in r.stdout


def test_host_key_both_directions(tmp_path: Path) -> None:
    env = dict(os.environ, SYSTEMD_CREDENTIAL_SECRET=str(tmp_path / "credential.secret"))
    subprocess.run(["systemd-creds", "setup"], env=env, check=True, capture_output=True)
    secret = creds.host_key((tmp_path / "credential.secret").read_bytes())
    (tmp_path / "in").write_bytes(b"from systemd")
    subprocess.run(["systemd-creds", "encrypt", "--with-key=host", "--name=a", str(tmp_path / "in"),
                    str(tmp_path / "a.cred")], env=env, check=True, capture_output=True)
    assert creds.decrypt((tmp_path / "a.cred").read_bytes(), "a", secret).data == b"from systemd"
    with pytest.raises(creds.CredentialError, match="host key"):
        creds.decrypt((tmp_path / "a.cred").read_bytes(), "a")
    info = creds.describe((tmp_path / "a.cred").read_bytes())
    assert (info["key"], info["name"], info["armored"]) == ("host", None, True)
    (tmp_path / "b.cred").write_bytes(creds.armor(creds.encrypt("b", b"from rdforge",
                                                                creds.KEY_HOST, secret)))
    r = subprocess.run(["systemd-creds", "decrypt", "--name=b", str(tmp_path / "b.cred"), "-"],
                       env=env, capture_output=True)
    assert r.returncode == 0 and r.stdout == b"from rdforge", r.stderr
    # Another machine's secret does not open it.
    other = os.urandom(16 + creds.HOST_SECRET_SIZE)
    with pytest.raises(creds.CredentialError, match="does not authenticate"):
        creds.decrypt((tmp_path / "b.cred").read_bytes(), "b", creds.host_key(other))


def test_corrupt_truncated_and_foreign_input() -> None:
    raw = creds.encrypt("x", b"payload" * 10)
    flipped = bytearray(raw)
    flipped[-20] ^= 1
    with pytest.raises(creds.CredentialError, match="does not authenticate"):
        creds.decrypt(bytes(flipped))
    with pytest.raises(creds.CredentialError, match="truncated|does not authenticate"):
        creds.decrypt(raw[:40])
    with pytest.raises(creds.CredentialError, match="too short"):
        creds.decrypt(b"abc")
    with pytest.raises(creds.CredentialError, match="unknown key type"):
        creds.decrypt(base64.b64encode(os.urandom(100)))


def test_names_size_limit_and_determinism() -> None:
    for bad in ("", "a/b", "..", "with space", "colon:name", "x" * 256):
        with pytest.raises(creds.CredentialError, match="invalid credential name"):
            creds.encrypt(bad, b"v")
    with pytest.raises(creds.CredentialError, match="over systemd's limit"):
        creds.encrypt("big", b"\0" * (creds.CREDENTIAL_SIZE_MAX + 1))
    a = creds.encrypt("n", b"v", timestamp_us=5)
    assert a == creds.encrypt("n", b"v", timestamp_us=5)
    assert a[24:36] != creds.encrypt("n", b"w", timestamp_us=5)[24:36]  # another IV


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rdforge.cli", "credential", *args],
                              capture_output=True, text=True, cwd=tmp_path)

    for args, text in ((["bad name", "--value", "x"], "invalid credential name"),
                       (["ok"], "exactly one of --value and --value-from-file"),
                       (["ok", "--value-from-file", "missing.txt"], "missing.txt"),
                       (["ok", "--value", "x", "--encrypt", "host+tpm2"], "--host-secret"),
                       (["ok", "--value", "x", "--encrypt", "host"], "--host-secret")):
        r = cli(*args)
        assert r.returncode != 0 and text in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
    (tmp_path / "hash.txt").write_text("$6$abc$def\n")
    r = cli("passwd.hashed-password.root", "--value-from-file", "hash.txt")
    assert r.returncode == 0, r.stderr
    made = creds.decrypt((tmp_path / "passwd.hashed-password.root.cred").read_bytes())
    assert made.data == b"$6$abc$def" and made.name == "passwd.hashed-password.root"
    assert (tmp_path / "passwd.hashed-password.root.cred").stat().st_mode & 0o077 == 0


def test_pcr_signing_key_errors_are_one_line_and_come_before_the_tpm(tmp_path: Path) -> None:
    """--tpm2-public-key is checked before any TPM is opened (there is none here)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    (tmp_path / "junk.pem").write_text("not a key\n")
    (tmp_path / "rsa.pem").write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "ec.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key()
                                      .public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    tpm = ["ok", "--value", "x", "--encrypt", "tpm2", "--tpm2-device", "/nonexistent/tpm"]
    for args, text in (([*tpm, "--tpm2-public-key", "missing.pem"], "missing.pem"),
                       ([*tpm, "--tpm2-public-key", "junk.pem"], "not a PEM key"),
                       ([*tpm, "--tpm2-public-key", "ec.pem"], "only RSA"),
                       ([*tpm, "--tpm2-public-key", "rsa.pem", "--tpm2-public-key-pcrs",
                         "11:sha256=" + "00" * 32], "no values"),
                       (["ok", "--value", "x", "--tpm2-public-key", "ec.pem"], "--encrypt tpm2")):
        r = subprocess.run([sys.executable, "-m", "rdforge.cli", "credential", *args],
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode != 0 and text in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ok.cred").exists()


def test_credentials_go_to_the_initrd_in_the_form_their_reader_takes() -> None:
    raw = creds.encrypt("systemd.extra-unit.x.service", b"[Unit]\n")
    # Generators read the binary form only, services base64 only (systemd 257).
    assert creds.for_initrd("systemd.extra-unit.x.service", creds.armor(raw)) == raw
    assert creds.for_initrd("systemd.unit-dropin.initrd.target~x", raw) == raw
    assert creds.for_initrd("passwd.hashed-password.root", raw) == creds.armor(raw)
    assert creds.for_initrd("passwd.hashed-password.root", creds.armor(raw)) == creds.armor(raw)
