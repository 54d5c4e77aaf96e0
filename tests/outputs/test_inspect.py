"""`rdforge inspect --list/--file/--extract`: the same paths as GNU cpio lists, the same tree
as GNU cpio extracts (device nodes aside, which extraction without root does not make), the
initrd inside a UKI, and hostile archives that try to write outside the directory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.formats import compress, cpio
from rdforge.outputs.uki import UkiOptions, build_uki


def _rdforge(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", *args], capture_output=True)


def _raw(image: Path) -> bytes:
    return compress.decompress(image.read_bytes())


def _walk(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """path -> (type, permission bits, content or link target) of a directory tree."""
    out: dict[str, tuple[str, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", 0, os.readlink(p).encode())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), b"")
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("f", stat.S_IMODE(st.st_mode), p.read_bytes())
            else:
                out[rel] = ("c", 0, b"")
    return out


@pytest.mark.integration
def test_list_names_the_paths_gnu_cpio_lists(default_build: Path) -> None:
    theirs = subprocess.run(["cpio", "-t", "--quiet"], input=_raw(default_build),
                            capture_output=True, check=True).stdout.decode().split("\n")
    r = _rdforge("inspect", "--list", "--json", str(default_build))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["path"].lstrip("/") for row in rows] == [p for p in theirs if p and p != "."]
    console = next(row for row in rows if row["path"] == "/dev/console")
    assert (console["type"], console["rdev"]) == ("c", "5:1")
    text = _rdforge("inspect", "--list", str(default_build)).stdout.decode().splitlines()
    assert len(text) == len(rows) and any(" /bin -> usr/bin" in line for line in text)


@pytest.mark.integration
def test_extract_gives_the_tree_gnu_cpio_extracts(default_build: Path, tmp_path: Path) -> None:
    gnu, ours = tmp_path / "gnu", tmp_path / "ours"
    gnu.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], cwd=gnu,
                   input=_raw(default_build), check=True)
    r = _rdforge("inspect", "--extract", str(ours), "--json", str(default_build))
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    theirs, mine = _walk(gnu), _walk(ours)
    devices = {p for p, (t, _m, _d) in theirs.items() if t == "c"}
    assert counts["devices_skipped"] == len(devices) > 0
    assert {p: v for p, v in theirs.items() if p not in devices} == mine
    assert counts["files"] == sum(1 for t, _m, _d in mine.values() if t == "f")


@pytest.mark.integration
def test_file_prints_one_file_and_reads_the_initrd_inside_a_uki(default_build: Path,
                                                                tmp_path: Path) -> None:
    uki = tmp_path / "uki.efi"
    build_uki(UkiOptions(initrd=default_build, output=uki, cmdline="quiet"))
    for image in (default_build, uki):
        r = _rdforge("inspect", "--file", "/etc/os-release", str(image))  # a link, followed
        assert r.returncode == 0, r.stderr
        assert b"VARIANT_ID=rdforge-initrd\n" in r.stdout
    r = _rdforge("inspect", "--file", "/usr/lib/nothing", str(uki))
    assert r.returncode == 1 and r.stderr.decode().strip().endswith("no /usr/lib/nothing in it")


def _image(tmp_path: Path, entries: list[cpio.CpioEntry]) -> Path:
    sink = tmp_path / "hostile.img"
    with open(sink, "wb") as f:
        cpio.write(f, entries)
    return sink


@pytest.mark.parametrize("entries,msg", [
    ([cpio.CpioEntry("../escaped", stat.S_IFREG | 0o644, data=b"x")], "escapes the tree"),
    ([cpio.CpioEntry("out", stat.S_IFLNK | 0o777, data=b"/tmp"),
      cpio.CpioEntry("out/escaped", stat.S_IFREG | 0o644, data=b"x")],
     "under a symbolic link that leaves"),
])
def test_extract_writes_nothing_outside_its_directory(tmp_path: Path,
                                                      entries: list[cpio.CpioEntry],
                                                      msg: str) -> None:
    image = _image(tmp_path, entries)
    r = _rdforge("inspect", "--extract", str(tmp_path / "x" / "y"), str(image))
    assert r.returncode == 1 and msg in r.stderr.decode(), r.stderr
    assert len(r.stderr.decode().strip().splitlines()) == 1
    assert not (tmp_path / "x" / "escaped").exists() and not Path("/tmp/escaped").exists()


def test_extract_clears_set_id_bits_and_refuses_a_full_directory(tmp_path: Path) -> None:
    image = _image(tmp_path, [cpio.CpioEntry("ro", stat.S_IFDIR | 0o555),
                              cpio.CpioEntry("ro/su", stat.S_IFREG | 0o4755, data=b"x"),
                              cpio.CpioEntry("tmp", stat.S_IFDIR | 0o1777)])
    r = _rdforge("inspect", "--extract", str(tmp_path / "x"), str(image))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "x/ro/su").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "x/ro").stat().st_mode) == 0o555
    assert stat.S_IMODE((tmp_path / "x/tmp").stat().st_mode) == 0o1777
    r = _rdforge("inspect", "--extract", str(tmp_path / "x"), str(image))
    assert r.returncode == 1 and b"not empty" in r.stderr
