"""Bad input gets one line naming what is wrong and exit status 1 (usage errors: 2), never a
traceback; these fail before any package is fetched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _rdforge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def _one_line(r: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert text in r.stderr, r.stderr


@pytest.mark.parametrize("toml,text", [
    ("build = 5\n", "[build] must be a table"),
    ("compression = 'zstd'\ncompression_level = 40\n", "compression level 40 is out of range"),
    ("source_date_epoch = 8589934592\n", "source_date_epoch 8589934592 is out of range"),
    ("add_packages = ['']\n", "'' is not a package name"),
    ("compression = 'none'\ncompression_level = 3\n", "takes no compression level"),
    ("[build]\ncompression = 'xz'\n[sysext]\nname = 'tools'\n",
     "unknown table or key 'sysext' beside [build]"),
])
def test_bad_settings_in_toml(tmp_path: Path, toml: str, text: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    _one_line(_rdforge("build", "-c", str(cfg), "-o", str(tmp_path / "i")), 1, text)
    assert not (tmp_path / "i").exists()


def test_bad_configuration_files(tmp_path: Path) -> None:
    _one_line(_rdforge("build", "-c", str(tmp_path)), 1, "is a directory")
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(b"# caf\xe9\n")
    _one_line(_rdforge("build", "-c", str(latin)), 1, "not UTF-8")


def test_bad_values_on_the_command_line(tmp_path: Path) -> None:
    out = str(tmp_path / "i")
    _one_line(_rdforge("build", "--add-packages", "", "-o", out), 1, "is not a package name")
    _one_line(_rdforge("build", "--source-date-epoch", "8589934592", "-o", out), 1,
              "out of range")
    r = _rdforge("build", "--compression-level", "x")
    assert r.returncode == 2 and "Traceback" not in r.stderr  # argparse's usage error


def test_an_internal_error_is_one_line_unless_debug_asks(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from rdforge import cli

    def boom(_ns: argparse.Namespace) -> int:
        raise ValueError("unexpected")

    real = cli.parser()

    def parser() -> argparse.ArgumentParser:
        real.set_defaults(func=boom)
        for action in real._subparsers._group_actions if real._subparsers else ():
            for sub in getattr(action, "choices", {}).values():
                sub.set_defaults(func=boom)
        return real

    monkeypatch.setattr(cli, "parser", parser)
    monkeypatch.delenv("RDFORGE_DEBUG", raising=False)
    assert cli.main(["inspect", "x"]) == 1
    err = capsys.readouterr().err
    assert "internal error: ValueError: unexpected" in err and len(err.splitlines()) == 1
    with pytest.raises(ValueError):
        cli.main(["--debug", "inspect", "x"])


@pytest.mark.integration
def test_inspect_piped_into_a_closed_reader(default_build: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rdforge.cli", "inspect", str(default_build)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # as `| head -c 10` does
    err = proc.stderr.read().decode()
    assert proc.wait() in (0, 141) and "Traceback" not in err, err


def test_inspect_refuses_what_is_no_image(tmp_path: Path) -> None:
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    _one_line(_rdforge("inspect", str(empty)), 1, "no cpio archive in it")
    _one_line(_rdforge("inspect", "/dev/zero"), 1, "not a regular file")
    damaged = tmp_path / "damaged.img"
    damaged.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(200)))
    _one_line(_rdforge("inspect", str(damaged)), 1, "damaged zstd data")


def test_installed_root_needs_a_lock(tmp_path: Path) -> None:
    r = _rdforge("build", "--installed-root", str(tmp_path), "-o", str(tmp_path / "x.img"))
    assert r.returncode == 1 and "give --locked" in r.stderr and r.stderr.count("\n") == 1


def test_genkey_does_not_replace_a_key_without_force(tmp_path: Path) -> None:
    r = _rdforge("genkey", "--name", "Vendor", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    first = (tmp_path / "key.pem").read_bytes(), (tmp_path / "cert.pem").read_bytes()
    _one_line(_rdforge("genkey", "--name", "Vendor", "-o", str(tmp_path)), 1,
              f"{tmp_path / 'key.pem'} exists")
    assert ((tmp_path / "key.pem").read_bytes(), (tmp_path / "cert.pem").read_bytes()) == first
    r = _rdforge("genkey", "--name", "Vendor", "-o", str(tmp_path), "--force")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "key.pem").read_bytes() != first[0]


def test_credential_json_and_the_null_key_note(tmp_path: Path) -> None:
    out = tmp_path / "pw.cred"
    r = _rdforge("credential", "passwd.plaintext-password.root", "--value", "secret", "-o",
                 str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"path": str(out), "name": "passwd.plaintext-password.root",
                                    "size": 6, "key": "null", "tpm2_pcrs": None}
    assert "TPM2 and Secure Boot" in r.stderr and len(r.stderr.strip().splitlines()) == 1
