"""`rdforge diff`: two images one package apart differ by exactly that package and its files;
two UKIs by the sections that changed; an image against itself is identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.config import Config
from rdforge.outputs.initrd import build
from rdforge.outputs.uki import UkiOptions, build_uki

pytestmark = pytest.mark.integration


def _diff(a: Path, b: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", "diff", str(a), str(b), *more],
                          capture_output=True, text=True)


def test_one_package_apart_names_that_package_and_its_files(default_build: Path,
                                                            tmp_path: Path) -> None:
    first = tmp_path / "first.img"
    build(Config(output=str(first), lock=str(tmp_path / "rdforge.lock"), add_packages=["hello"]))
    # the image compared is built from that lock, as a vendor's next image would be
    other = tmp_path / "initrd.img"
    build(Config(output=str(other), lock=str(tmp_path / "rdforge.lock"), locked=True,
                 add_packages=["hello"]))
    assert other.read_bytes() == first.read_bytes()
    r = _diff(default_build, other, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    hello = json.loads(Path(f"{other}.manifest.json").read_text())["packages"]
    version = next(p["version"] for p in hello if p["name"] == "hello")
    assert d["packages"]["added"] == {"hello": version}
    assert (d["packages"]["removed"], d["packages"]["changed"]) == ({}, {})
    assert d["files"] == {"added": ["/usr/bin/hello"], "removed": [], "changed": {}}
    assert d["modules"] == {"added": [], "removed": [], "changed": []} and not d["identical"]
    text = _diff(default_build, other).stdout.splitlines()
    assert f"+ package hello {version}" in text and "+ /usr/bin/hello" in text
    same = json.loads(_diff(default_build, default_build, "--json").stdout)
    assert same["identical"] and same["files"] == {"added": [], "removed": [], "changed": {}}


def test_two_ukis_differ_by_their_command_line_section(default_build: Path,
                                                       tmp_path: Path) -> None:
    a, b = tmp_path / "a.efi", tmp_path / "b.efi"
    build_uki(UkiOptions(initrd=default_build, output=a, cmdline="quiet"))
    build_uki(UkiOptions(initrd=default_build, output=b, cmdline="quiet rd.luks=0"))
    d = json.loads(_diff(a, b, "--json").stdout)
    assert d["uki_sections"] == {"added": [], "removed": [], "changed": [".cmdline"]}
    assert d["files"] == {"added": [], "removed": [], "changed": {}}
    assert d["packages"] is None  # UKIs carry no manifest beside them
