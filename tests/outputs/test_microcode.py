"""Early microcode: an uncompressed cpio before the image, in a UKI's .ucode, and alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.outputs import microcode
from rdforge.outputs.microcode import Cpu
from rdforge.sources import lock as lockfile
from rdforge.sources.cache import BlobCache

SKYLAKE = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 94
model name\t: Intel(R) Core(TM) i7-6700K CPU @ 4.00GHz
stepping\t: 3

processor\t: 1
vendor_id\t: GenuineIntel
"""


def test_the_host_cpu_is_read_from_cpuinfo(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(SKYLAKE)
    assert microcode.host_cpu(tmp_path / "cpuinfo") == Cpu("GenuineIntel", 6, 94, 3)
    (tmp_path / "arm").write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")
    with pytest.raises(microcode.MicrocodeError, match="names no x86 vendor"):
        microcode.host_cpu(tmp_path / "arm")


def test_host_only_takes_the_cpus_own_file() -> None:
    intel = ["06-5e-03", "06-8e-09", "06-5e-02"]
    amd = ["microcode_amd.bin", "microcode_amd_fam17h.bin", "microcode_amd_fam19h.bin"]
    assert microcode.wanted_files("GenuineIntel", intel, Cpu("GenuineIntel", 6, 94, 3)) == ["06-5e-03"]
    assert microcode.wanted_files("GenuineIntel", intel, None) == ["06-5e-02", "06-5e-03", "06-8e-09"]
    assert microcode.wanted_files("AuthenticAMD", amd, Cpu("AuthenticAMD", 0x19, 1, 1)) == [
        "microcode_amd_fam19h.bin"]
    assert microcode.wanted_files("AuthenticAMD", amd, Cpu("AuthenticAMD", 0x10, 2, 3)) == [
        "microcode_amd.bin"]
    files = {"usr/lib/firmware/amd-ucode/microcode_amd.bin": b"A",
             "usr/lib/firmware/intel-ucode/06-5e-03": b"I"}
    assert microcode.blobs(files, Cpu("GenuineIntel", 6, 94, 3)) == {"GenuineIntel": b"I"}
    assert microcode.blobs(files, None) == {"AuthenticAMD": b"A", "GenuineIntel": b"I"}


def test_gnu_cpio_reads_the_early_archive_and_split_finds_it(tmp_path: Path) -> None:
    early = microcode.early_cpio({"GenuineIntel": b"intel!", "AuthenticAMD": b"amd"}, 1700000000)
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=early, capture_output=True,
                             check=True).stdout.decode()
    names = [line.split()[-1] for line in listing.splitlines()]
    assert names == ["kernel", "kernel/x86", "kernel/x86/microcode",
                     "kernel/x86/microcode/AuthenticAMD.bin", "kernel/x86/microcode/GenuineIntel.bin"]
    assert all(" root " in line for line in listing.splitlines())
    rest = b"\x28\xb5\x2f\xfd compressed main archive"
    assert microcode.split_early(early + rest) == (early, rest)
    assert microcode.split_early(rest) == (b"", rest)
    other = microcode.early_cpio({}, 0) + rest  # an empty early part is no part
    assert microcode.split_early(other) == (b"", rest)


def _extracted(pkg: str, tmp: Path) -> Path:
    """A microcode package as dpkg-deb unpacks it."""
    lk = lockfile.read(next(tmp.parent.glob("microcode*/rdforge.lock"), tmp))
    p = next(p for p in lk.microcode if p.name == pkg)
    hit = BlobCache().lookup(p.sha256, p.size, verify=False)
    assert hit is not None
    out = tmp / pkg
    subprocess.run(["dpkg-deb", "-x", str(hit), str(out)], check=True)
    return out


def _members(image: Path, tmp: Path) -> Path:
    early, _ = microcode.split_early(image.read_bytes())
    out = tmp / "early"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=early, cwd=out, check=True)
    return out / "kernel/x86/microcode"


@pytest.mark.integration
def test_iucode_tool_finds_every_intel_microcode_in_the_image(microcode_build: Path,
                                                              tmp_path: Path) -> None:
    tool = shutil.which("iucode_tool") or "/usr/sbin/iucode_tool"
    ours = subprocess.run([tool, "-tr", "-l", str(microcode_build)], capture_output=True,
                          text=True, check=True)
    pkg = _extracted("intel-microcode", tmp_path)
    theirs = subprocess.run([tool, "-l", str(pkg / "usr/lib/firmware/intel-ucode")],
                            capture_output=True, text=True, check=True)
    count = (ours.stdout + ours.stderr).count("sig 0x")
    assert count > 100 and count == (theirs.stdout + theirs.stderr).count("sig 0x")


@pytest.mark.integration
def test_amd_microcode_is_the_packages_files_in_byte_order(microcode_build: Path,
                                                           tmp_path: Path) -> None:
    pkg = _extracted("amd64-microcode", tmp_path)
    files = sorted((pkg / "usr/lib/firmware/amd-ucode").iterdir(), key=lambda p: p.name.encode())
    amd = (_members(microcode_build, tmp_path) / "AuthenticAMD.bin").read_bytes()
    assert amd == b"".join(f.read_bytes() for f in files)
    assert amd[:4] == b"DMA\0"  # an AMD microcode container


@pytest.mark.integration
def test_microcode_leaves_the_main_archive_alone_and_is_pinned(microcode_build: Path,
                                                               default_build: Path,
                                                               tmp_path: Path) -> None:
    early, main = microcode.split_early(microcode_build.read_bytes())
    assert early and main == default_build.read_bytes()
    m = json.loads(microcode_build.with_name("initrd.img.manifest.json").read_text())
    assert set(m["microcode"]["vendors"]) == {"AuthenticAMD", "GenuineIntel"}
    lock = microcode_build.with_name("rdforge.lock")
    assert [p.name for p in lockfile.read(lock).microcode] == ["amd64-microcode", "intel-microcode"]
    again = tmp_path / "again.img"
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "build", "--microcode", "all",
                        "--locked", "--offline", "--lock", str(lock), "-o", str(again), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert again.read_bytes() == microcode_build.read_bytes()
    alone = tmp_path / "microcode.cpio"
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "microcode", "--locked", "--offline",
                        "--lock", str(lock), "-o", str(alone)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert alone.read_bytes() == early


@pytest.mark.integration
def test_a_uki_of_it_carries_the_microcode_as_ucode(microcode_build: Path, default_build: Path,
                                                    tmp_path: Path) -> None:
    uki = tmp_path / "vmlinuz.efi"
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "uki", "--initrd", str(microcode_build),
                        "-o", str(uki)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    objcopy = shutil.which("objcopy") or "/usr/bin/objcopy"
    for section, want in ((".ucode", microcode.split_early(microcode_build.read_bytes())[0]),
                          (".initrd", default_build.read_bytes())):
        out = tmp_path / section.strip(".")
        subprocess.run([objcopy, "-O", "binary", f"--only-section={section}", str(uki), str(out)],
                       check=True, capture_output=True)
        assert out.read_bytes()[:len(want)] == want
        assert out.read_bytes()[len(want):].strip(b"\0") == b""  # only the file alignment after
