import subprocess
from pathlib import Path

from rdforge.formats.elf import is_elf, read_elf


def test_needed_and_soname_match_readelf() -> None:
    for path in (Path("/usr/bin/ls"), Path("/usr/lib/x86_64-linux-gnu/libz.so.1")):
        data = path.resolve().read_bytes()
        assert is_elf(data)
        info = read_elf(data)
        out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                             check=True).stdout
        needed = [line.split("[")[1].rstrip("]") for line in out.splitlines()
                  if "(NEEDED)" in line]
        assert info.needed == needed
        sonames = [line.split("[")[1].rstrip("]") for line in out.splitlines()
                   if "(SONAME)" in line]
        assert info.soname == (sonames[0] if sonames else "")


def test_not_elf() -> None:
    assert not is_elf(b"#!/bin/sh\n")
