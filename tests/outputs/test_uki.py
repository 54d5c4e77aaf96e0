"""`rdforge uki` and `rdforge addon`: byte for byte what systemd's ukify (trixie) makes from
the same inputs; signatures checked with sbverify."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pefile  # type: ignore[import-untyped]
import pytest
from conftest import TrixieTools
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rdforge.config import Config
from rdforge.formats.deb import DebFile
from rdforge.formats.pe import PE
from rdforge.outputs.uki import UkiOptions, build_addon, build_uki, stub_from_archive

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ukify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ukify from trixie's systemd-ukify package, run with this Python and pefile."""
    from rdforge.sources.fetch import fetch_all
    from rdforge.sources.plan import load_universe

    pkg = load_universe(Config()).universe.candidates["systemd-ukify"]
    with DebFile(fetch_all([pkg], False)[0]) as d:
        script = next(c for ti, c in d.data() if ti.name.endswith("bin/ukify") and c)
    out = tmp_path_factory.mktemp("ukify") / "ukify"
    out.write_bytes(script)
    return out


def _same_as_ukify(ukify: Path, ours: Path, info: dict[str, object], initrd: Path, cmdline: str,
                   *ukify_args: str, tools: Path | None = None) -> None:
    """ukify builds the same inputs (kernel, initrd, command line, the os-release rdforge wrote,
    the stub) and the two files are compared section by section, then whole. ukify finds the
    systemd tools it runs in `tools` (it looks for some with --tools, for others on PATH)."""
    env = dict(os.environ)
    if tools:
        ukify_args += ("--tools", str(tools))
        env["PATH"] = f"{tools}:{env['PATH']}"
    tmp = ours.parent
    data = ours.read_bytes()
    stub, _ = stub_from_archive("trixie", "amd64", False, False)
    (tmp / "stub").write_bytes(stub)
    osrel = PE.parse(data).section(".osrel")
    assert osrel is not None
    (tmp / "osrel").write_bytes(osrel.data(data))
    r = subprocess.run([sys.executable, str(ukify), "build", "--linux", str(info["kernel"]),
                        "--initrd", str(initrd), "--cmdline", cmdline,
                        "--os-release", f"@{tmp / 'osrel'}", "--uname",
                        str(info["kernel_version"]), "--stub", str(tmp / "stub"),
                        "--output", str(tmp / "ref.efi"), *ukify_args],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    ref = (tmp / "ref.efi").read_bytes()
    a, b = pefile.PE(data=ref, fast_load=True), pefile.PE(data=data, fast_load=True)
    assert [s.Name for s in a.sections] == [s.Name for s in b.sections]
    for x, y in zip(a.sections, b.sections, strict=True):
        assert (x.VirtualAddress, x.Misc_VirtualSize, x.Characteristics, x.get_data()) == \
            (y.VirtualAddress, y.Misc_VirtualSize, y.Characteristics, y.get_data()), x.Name
    assert data == ref


def test_uki_is_byte_identical_to_ukify(default_build: Path, ukify: Path, tmp_path: Path) -> None:
    cmdline = "console=ttyS0 root=LABEL=rdforge-root rw"
    out = tmp_path / "ours.efi"
    info = build_uki(UkiOptions(initrd=default_build, output=out, cmdline=cmdline))
    _same_as_ukify(ukify, out, info, default_build, cmdline)
    ours = out.read_bytes()
    osrel = PE.parse(ours).section(".osrel")
    assert osrel is not None and b"ID=debian" in osrel.data(ours)
    sbat = PE.parse(ours).section(".sbat")
    assert sbat is not None and b"uki,1,UKI" in sbat.data(ours) and b"systemd-stub" in sbat.data(ours)


def _bmp_2x2() -> bytes:
    """A 2x2 24-bit BMP: file header, BITMAPINFOHEADER, two rows padded to four bytes."""
    pixels = (b"\x00\x00\xff" * 2 + b"\x00\x00") * 2
    info = struct.pack("<IiiHHIIiiII", 40, 2, 2, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    size = 14 + len(info) + len(pixels)
    return b"BM" + struct.pack("<IHHI", size, 0, 0, 14 + len(info)) + info + pixels


def test_pcr_signed_uki_is_byte_identical_to_ukify_with_systemd_measure(
        default_build: Path, ukify: Path, trixie_systemd: TrixieTools, tmp_path: Path) -> None:
    """ukify asks trixie's systemd-measure for the PCR 11 values and their signatures, and
    systemd-keyutil for .pcrpkey: rdforge's own prediction and signatures must be the same,
    with a splash image measured too."""
    key = tmp_path / "pcr.key"
    key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    splash = tmp_path / "splash.bmp"
    splash.write_bytes(_bmp_2x2())
    cmdline = "console=ttyS0 root=LABEL=rdforge-root rw"
    out = tmp_path / "ours.efi"
    info = build_uki(UkiOptions(initrd=default_build, output=out, cmdline=cmdline, pcr_key=key,
                                splash=splash))
    assert info["pcr_signed"]
    tools = trixie_systemd.wrappers(tmp_path / "tools", "usr/lib/systemd/systemd-measure",
                                    "usr/lib/systemd/systemd-keyutil")
    _same_as_ukify(ukify, out, info, default_build, cmdline, "--pcr-private-key", str(key),
                   "--splash", str(splash), tools=tools)
    assert PE.parse(out.read_bytes()).section(".splash") is not None
    data = out.read_bytes()
    sig = PE.parse(data).section(".pcrsig")
    assert sig is not None
    policies = json.loads(sig.data(data))
    assert set(policies) == {"sha1", "sha256", "sha384", "sha512"}
    assert all(len(v) == 4 and all(e["pcrs"] == [11] for e in v) for v in policies.values())
    # Another command line is another image: other PCR values, other signed policies.
    other = build_uki(UkiOptions(initrd=default_build, output=tmp_path / "other.efi",
                                 cmdline="quiet", pcr_key=key))
    assert other["sections"] != info["sections"]
    other_sig = PE.parse((tmp_path / "other.efi").read_bytes()).section(".pcrsig")
    assert other_sig is not None
    assert other_sig.data((tmp_path / "other.efi").read_bytes()) != sig.data(data)


def test_signed_uki_verifies_and_a_flipped_byte_does_not(default_build: Path,
                                                          vendor_keys: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    from rdforge.keys import genkey

    out = tmp_path / "signed.efi"
    build_uki(UkiOptions(initrd=default_build, output=out, cmdline="quiet", key=vendor_keys[0],
                         cert=vendor_keys[1]))

    def verify(path: Path, cert: Path) -> int:
        return subprocess.run(["sbverify", "--cert", str(cert), str(path)],
                              capture_output=True).returncode

    assert verify(out, vendor_keys[1]) == 0
    other = genkey("other", tmp_path / "other")[1]
    assert verify(out, other) != 0
    raw = bytearray(out.read_bytes())
    raw[len(raw) // 2] ^= 1  # inside .initrd
    (tmp_path / "tampered.efi").write_bytes(raw)
    assert verify(tmp_path / "tampered.efi", vendor_keys[1]) != 0
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "inspect", "--json", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["signers"] == ["CN=rdforge test vendor"] and info["cmdline"] == "quiet"


def test_signed_and_unsigned_ukis_are_reproducible(default_build: Path,
                                                   vendor_keys: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    for n in ("a", "b"):
        build_uki(UkiOptions(initrd=default_build, output=tmp_path / f"{n}.efi", cmdline="x"))
        build_uki(UkiOptions(initrd=default_build, output=tmp_path / f"{n}.signed.efi",
                             cmdline="x", key=vendor_keys[0], cert=vendor_keys[1]))
    assert (tmp_path / "a.efi").read_bytes() == (tmp_path / "b.efi").read_bytes()
    assert (tmp_path / "a.signed.efi").read_bytes() == (tmp_path / "b.signed.efi").read_bytes()
    # The signed image is the unsigned one plus the certificate table (and its directory entry).
    unsigned = (tmp_path / "a.efi").read_bytes()
    signed = bytearray((tmp_path / "a.signed.efi").read_bytes())
    entry = PE.parse(unsigned).opt_offset + 112 + 4 * 8
    signed[entry:entry + 8] = bytes(8)
    assert signed[:len(unsigned)] == unsigned


def test_addon_is_byte_identical_to_ukify_and_signed(ukify: Path, vendor_keys: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    build_addon("console=ttyS0 loglevel=7", tmp_path / "ours.addon.efi")
    stub, _ = stub_from_archive("trixie", "amd64", True, False)
    (tmp_path / "stub").write_bytes(stub)
    r = subprocess.run([sys.executable, str(ukify), "build", "--cmdline",
                        "console=ttyS0 loglevel=7", "--stub", str(tmp_path / "stub"),
                        "--output", str(tmp_path / "ref.addon.efi")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ours.addon.efi").read_bytes() == (tmp_path / "ref.addon.efi").read_bytes()
    build_addon("x=1", tmp_path / "signed.addon.efi", key=vendor_keys[0], cert=vendor_keys[1])
    assert subprocess.run(["sbverify", "--cert", str(vendor_keys[1]),
                           str(tmp_path / "signed.addon.efi")], capture_output=True).returncode == 0


def test_uki_errors(default_build: Path, vendor_keys: tuple[Path, Path], tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "uki", "--initrd",
                        str(tmp_path / "none.img"), "-o", str(tmp_path / "x.efi")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "none.img" in r.stderr and len(r.stderr.splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "uki", "--initrd", str(default_build),
                        "--key", str(vendor_keys[0]), "-o", str(tmp_path / "x.efi")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--key and --cert" in r.stderr
    (tmp_path / "splash.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "uki", "--initrd", str(default_build),
                        "--splash", str(tmp_path / "splash.png"), "-o", str(tmp_path / "x.efi")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "splash.png: not a BMP image" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "x.efi").exists()
