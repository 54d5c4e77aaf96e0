"""The rpm reader against rpm itself: packages made by rpmbuild (zstd, xz and gzip payloads),
signed by rpmsign, read back by `rpm -qp`, rpm2cpio and `rpmkeys --checksig`."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from rpmtools import SigningKey, build_rpm, make_key, sign_rpm

from rdforge.errors import FormatError, SignatureError
from rdforge.formats.rpm import PAYLOADCOMPRESSOR, Rpm
from rdforge.sources.openpgp import verify_detached

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("rpmbuild"),
                                 reason="rpm is not installed (setup.sh installs it)")]

SPEC = """\
Name: rdf-test
Version: 1.2~rc1
Release: 3.fc41
Epoch: 2
Summary: rdforge's test package
License: MIT
BuildArch: x86_64
%description
A package with each kind of file rpm carries.
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/lib/rdf %{buildroot}/etc
printf 'hello\\n' > %{buildroot}/usr/bin/hello
ln -s hello %{buildroot}/usr/bin/hi
printf 'shared' > %{buildroot}/usr/lib/rdf/a
ln %{buildroot}/usr/lib/rdf/a %{buildroot}/usr/lib/rdf/b
: > %{buildroot}/usr/lib/rdf/empty
head -c 300000 /dev/urandom > %{buildroot}/usr/lib/rdf/random
printf 'x=1\\n' > %{buildroot}/etc/rdf.conf
%files
%attr(4755,root,root) /usr/bin/hello
/usr/bin/hi
%dir /usr/lib/rdf
/usr/lib/rdf/a
/usr/lib/rdf/b
/usr/lib/rdf/empty
/usr/lib/rdf/random
%attr(0640,root,adm) %config(noreplace) /etc/rdf.conf
%ghost /var/log/rdf.log
"""
COMPRESSIONS = {"zstd": "w19.zstdio", "xz": "w9.xzdio", "gzip": "w6.gzdio"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    top = tmp_path_factory.mktemp("rpmbuild")
    return {comp: build_rpm(SPEC, top / comp, payload) for comp, payload in COMPRESSIONS.items()}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return make_key(tmp_path_factory.mktemp("gnupg"))


QF = "[%{FILENAMES}\t%{FILEMODES}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\t%{FILELINKTOS}\t" \
     "%{FILEDIGESTS}\t%{FILEFLAGS}\n]"


@pytest.mark.parametrize("comp", sorted(COMPRESSIONS))
def test_header_and_files_as_rpm_reads_them(built: dict[str, Path], comp: str) -> None:
    r = Rpm.open(built[comp])
    q = subprocess.run(["rpm", "-qp", "--qf", "%{NAME} %{EPOCH}:%{VERSION}-%{RELEASE} %{ARCH} "
                        "%{PAYLOADCOMPRESSOR}", str(built[comp])],
                       check=True, capture_output=True, text=True).stdout
    assert q == f"{r.name} {r.evr} {r.arch} {r.header.text(PAYLOADCOMPRESSOR)}"
    assert r.header.text(PAYLOADCOMPRESSOR) == comp
    theirs = subprocess.run(["rpm", "-qp", "--qf", QF, str(built[comp])], check=True,
                            capture_output=True, text=True).stdout.splitlines()
    ours = [f"/{f.path}\t{f.mode}\t{f.user}\t{f.group}\t{f.link}\t{f.digest}\t{8 if f.ghost else 0}"
            for f in r.files()]
    # FILEFLAGS: %config(noreplace) is 1|16; only %ghost (64) matters to rdforge.
    theirs = ["\t".join([*x.split("\t")[:6], "8" if int(x.split("\t")[6]) & 64 else "0"])
              for x in theirs]
    assert ours == theirs
    modes = {f.path: f.mode for f in r.files()}
    assert modes["usr/bin/hello"] == stat.S_IFREG | 0o4755
    assert stat.S_ISLNK(modes["usr/bin/hi"]) and stat.S_ISDIR(modes["usr/lib/rdf"])


@pytest.mark.parametrize("comp", sorted(COMPRESSIONS))
def test_contents_match_rpm2cpio(built: dict[str, Path], comp: str, tmp_path: Path) -> None:
    cpio_bytes = subprocess.run(["rpm2cpio", str(built[comp])], check=True,
                                capture_output=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=cpio_bytes,
                   cwd=tmp_path, check=True)
    files = {f.path: f for f in Rpm.open(built[comp]).files()}
    for path, f in files.items():
        on_disk = tmp_path / path
        if f.ghost:
            assert not on_disk.exists()
        elif stat.S_ISREG(f.mode):
            assert on_disk.read_bytes() == f.data, path
        elif stat.S_ISLNK(f.mode):
            assert os.readlink(on_disk) == f.link
    # The hard link's content came once, with its last name; both names have it.
    assert files["usr/lib/rdf/a"].data == files["usr/lib/rdf/b"].data == b"shared"


def test_signed_header_verified_as_rpmkeys_does(built: dict[str, Path], tmp_path: Path,
                                                 key: SigningKey) -> None:
    assert Rpm.open(built["zstd"]).signature_packet() is None  # rpmbuild does not sign
    signed = tmp_path / "signed.rpm"
    shutil.copyfile(built["zstd"], signed)
    r = Rpm.open(sign_rpm(signed, key))
    sig = r.signature_packet()
    assert sig is not None
    verify_detached(sig, r.header.blob, key.keyring, "signed.rpm")
    db = tmp_path / "db"
    subprocess.run(["rpmkeys", "--dbpath", str(db), "--import", str(key.armored)], check=True)
    out = subprocess.run(["rpmkeys", "--dbpath", str(db), "--checksig", "-v", str(signed)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "Signature, key ID" in out.stdout and "OK" in out.stdout
    # Another key: refused by both.
    other = make_key(tmp_path / "other", "someone else")
    with pytest.raises(SignatureError, match="signed.rpm: bad or missing signature"):
        verify_detached(sig, r.header.blob, other.keyring, "signed.rpm")
    db2 = tmp_path / "db2"
    subprocess.run(["rpmkeys", "--dbpath", str(db2), "--import", str(other.armored)], check=True)
    assert subprocess.run(["rpmkeys", "--dbpath", str(db2), "--checksig", str(signed)],
                          capture_output=True).returncode != 0


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_a_damaged_header_or_payload_is_refused_as_by_rpm(built: dict[str, Path],
                                                          tmp_path: Path) -> None:
    good = built["xz"].read_bytes()
    r = Rpm(good, "good")
    header_at = len(good) - len(r.payload) - len(r.header.blob)
    # A byte of the summary text (in the header's data store), then the payload's middle.
    at = good.index(b"rdforge's test package")
    for damaged, says in ((_flip(good, at), "header digest mismatch"),
                          (_flip(good, len(good) - len(r.payload) // 2), "payload digest mismatch")):
        f = tmp_path / "damaged.rpm"
        f.write_bytes(damaged)
        with pytest.raises(FormatError, match=says):
            Rpm.open(f)
        assert subprocess.run(["rpmkeys", "--checksig", "--nosignature", str(f)],
                              capture_output=True).returncode != 0
    assert header_at > 96


def test_truncated_or_garbled_packages_give_a_format_error(built: dict[str, Path]) -> None:
    """Every cut of a real package, and its index entries pointed elsewhere: one clear
    error, never another exception."""
    good = built["gzip"].read_bytes()
    for n in list(range(0, 2000, 7)) + list(range(2000, len(good), len(good) // 200)):
        with pytest.raises(FormatError):
            list(Rpm(good[:n], "cut").files())
    r = Rpm(good, "good")
    start = len(good) - len(r.payload) - len(r.header.blob)
    for i in range(int.from_bytes(good[start + 8:start + 12], "big")):
        entry = start + 16 + 16 * i
        bad = good[:entry + 8] + b"\x7f\xff\xff\xf0" + good[entry + 12:]  # offset far out
        with pytest.raises(FormatError):
            list(Rpm(bad, "garbled").files())
