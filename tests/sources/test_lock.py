"""The lock names packages by archive path and digest, never by mirror host or local path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdforge.errors import LockError
from rdforge.sources import lock as lockfile
from rdforge.sources.archive import Package

SHA = "ab" * 32


def test_the_lock_holds_no_machine_paths(tmp_path: Path) -> None:
    archive = Package("bash", "5.2", "amd64", "pool/main/b/bash/bash_5.2_amd64.deb", SHA, 10,
                      base="http://mirror.example/debian")
    local = Package("hello", "1", "amd64", "hello_1_amd64.deb", SHA, 10,
                    local="/home/someone/debs/hello_1_amd64.deb")
    text = lockfile.Lock("trixie", "amd64", [archive, local], None).to_json()
    assert "mirror.example" not in text and "/home/someone" not in text
    data = json.loads(text)
    assert [p["path"] for p in data["packages"]] == ["pool/main/b/bash/bash_5.2_amd64.deb",
                                                      "hello_1_amd64.deb"]
    (tmp_path / "l").write_text(text)
    back = lockfile.read(tmp_path / "l")
    assert [(p.name, p.filename, p.base, p.local) for p in back.packages] == [
        ("bash", "pool/main/b/bash/bash_5.2_amd64.deb", "", ""),
        ("hello", "hello_1_amd64.deb", "", "")]


def test_a_version_1_lock_is_read_without_its_machine_paths(tmp_path: Path) -> None:
    rec = {"name": "hello", "version": "1", "architecture": "amd64", "sha256": SHA, "size": 3,
           "path": "/srv/debs/hello_1_amd64.deb", "base": ""}
    (tmp_path / "l").write_text(json.dumps({"lock-version": 1, "release": "trixie",
                                            "arch": "amd64", "kernel": None, "packages": [rec]}))
    (p,) = lockfile.read(tmp_path / "l").packages
    assert p.filename == "hello_1_amd64.deb" and p.local == "" and p.base == ""


def test_an_unknown_lock_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "l").write_text(json.dumps({"lock-version": 9}))
    with pytest.raises(LockError, match="version 1 or 2"):
        lockfile.read(tmp_path / "l")


def test_the_lock_records_what_the_image_takes_from_each_package(tmp_path: Path) -> None:
    trees = {"hello": {"newest": 1700000000, "members": [
        ["./usr/bin", "d", 0o755], ["./usr/bin/hello", "f", 0o755, SHA],
        ["./usr/bin/hi", "l", "hello"], ["./usr/bin/hullo", "h", "./usr/bin/hello"]]}}
    pkg = Package("hello", "1", "amd64", "pool/main/h/hello/hello_1_amd64.deb", SHA, 10)
    text = lockfile.Lock("trixie", "amd64", [pkg], None, trees=trees).to_json()
    assert '\n   ["./usr/bin/hello", "f", 493, "' in text  # one line per member
    (tmp_path / "l").write_text(text)
    assert lockfile.read(tmp_path / "l").trees == trees
