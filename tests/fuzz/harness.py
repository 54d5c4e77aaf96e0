"""A seeded mutation fuzzer for rdforge's readers: each target is a reader and real inputs
to start from; mutations flip bits, overwrite fields with edge values, cut, repeat and insert.
Any exception that is not rdforge's own error is a crash; a reader running past the time
limit is a hang. Deterministic for a given seed, so a failure reproduces.

    python3 tests/fuzz/harness.py [--iterations N] [--seed S] [--only NAME...]   # a table
"""

from __future__ import annotations

import argparse
import io
import json
import random
import signal
import stat
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from rdforge.errors import RdforgeError

EDGE = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x80",
        b"FFFFFFFF", b"00000000", b"\xff" * 8)


def mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.choice((1, 1, 2, 4, 8))):
        op = rnd.randrange(6)
        if not b:
            b += rnd.randbytes(rnd.randrange(1, 16))
            continue
        i = rnd.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:
            b[i] = rnd.randrange(256)
        elif op == 2:
            e = rnd.choice(EDGE)
            b[i:i + len(e)] = e
        elif op == 3:
            del b[rnd.randrange(len(b)):]
        elif op == 4:
            j = rnd.randrange(i, min(len(b), i + 64) + 1)
            b[i:i] = b[i:j] * rnd.randrange(1, 4)
        else:
            b[i:i] = rnd.randbytes(rnd.randrange(1, 9))
    return bytes(b)


class Hang(Exception):
    pass


def _alarm(_sig: int, _frame: FrameType | None) -> None:
    raise Hang()


@dataclass
class Result:
    runs: int = 0
    crashes: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # where -> (what, input)
    hangs: int = 0


def run(target: Callable[[bytes], object], seeds: list[bytes], iterations: int, seed: int,
        limit: float = 5.0) -> Result:
    res = Result()
    rnd = random.Random(seed)
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for n in range(iterations):
            data = mutate(rnd.choice(seeds), rnd) if n else seeds[0]
            res.runs += 1
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                target(data)
            except RdforgeError:
                pass
            except Hang:
                res.hangs += 1
            except Exception as e:  # noqa: BLE001 - a crash, recorded by where it happened
                tb = traceback.extract_tb(e.__traceback__)[-1]
                where = f"{Path(tb.filename).name}:{tb.lineno} {type(e).__name__}"
                res.crashes.setdefault(where, (str(e)[:200], data))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    return res


# --- targets: each takes bytes, seeds are real inputs of its format ---------------------

def _cpio_seed() -> bytes:
    from rdforge.formats import cpio

    out = io.BytesIO()
    cpio.write(out, [cpio.CpioEntry("etc", stat.S_IFDIR | 0o755),
                     cpio.CpioEntry("etc/a", stat.S_IFREG | 0o644, data=b"hello\n", ino_key=1),
                     cpio.CpioEntry("etc/b", stat.S_IFREG | 0o644, data=b"hello\n", ino_key=1),
                     cpio.CpioEntry("link", stat.S_IFLNK | 0o777, data=b"etc/a")])
    return out.getvalue()


def t_cpio(data: bytes) -> None:
    from rdforge.formats import cpio

    list(cpio.segments(data))
    cpio.read(data)


def t_decompress(data: bytes) -> None:
    from rdforge.formats import compress

    compress.decompress(data, limit=64 << 20)


def _compress_seeds() -> list[bytes]:
    from rdforge.formats import compress

    raw = _cpio_seed() * 50
    return [compress.compress_stream(raw, a) for a in ("zstd", "xz", "gzip", "lz4")]


def t_elf(data: bytes) -> None:
    from rdforge.formats import elf

    if elf.is_elf(data):
        elf.read_elf(data)
        elf.modinfo(data)


def t_creds(data: bytes) -> None:
    from rdforge.formats import creds

    creds.decrypt(data)
    creds.decrypt(creds.armor(data))


def t_creds_header(data: bytes) -> None:
    from rdforge.formats import creds

    creds.describe(data)


def _creds_header_seeds() -> list[bytes]:
    from rdforge.formats import creds

    null = creds.encrypt("x", b"secret")
    return [null, *(k.bytes + null[16:] for k in (creds.KEY_TPM2, creds.KEY_TPM2_PK))]


def _creds_seeds() -> list[bytes]:
    from rdforge.formats import creds

    return [creds.encrypt("passwd.hashed-password.root", b"$6$x$y"),
            creds.armor(creds.encrypt("x", b"secret"))]


def t_stanzas(data: bytes) -> None:
    from rdforge.formats.deb822 import parse_stanzas

    list(parse_stanzas(data.decode("utf-8", "replace")))


def t_lock(data: bytes) -> None:
    from rdforge.sources import lock

    with tempfile.NamedTemporaryFile(suffix=".lock") as f:
        f.write(data)
        f.flush()
        lock.read(Path(f.name))


def _lock_seed() -> bytes:
    return json.dumps({"version": 1, "release": "trixie", "arch": "amd64", "packages": [
        {"name": "bash", "version": "5.2.37-2", "arch": "amd64", "sha256": "0" * 64,
         "size": 10, "filename": "pool/main/b/bash/bash.deb", "base": "http://x/debian"}],
        "kernel": None}).encode()


def t_toml(data: bytes) -> None:
    from rdforge import config

    with tempfile.NamedTemporaryFile(suffix=".toml") as f:
        f.write(data)
        f.flush()
        config.load(Path(f.name))


def t_deb(data: bytes) -> None:
    from rdforge.formats.deb import DebFile

    with tempfile.NamedTemporaryFile(suffix=".deb") as f:
        f.write(data)
        f.flush()
        with DebFile(Path(f.name)) as d:
            d.control()
            for _ti, _c in d.data(1 << 20):
                pass


def _deb_seed() -> bytes:
    import tarfile

    def tgz(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, content in files.items():
                ti = tarfile.TarInfo(name)
                ti.size = len(content)
                tar.addfile(ti, io.BytesIO(content))
        return buf.getvalue()

    out = bytearray(b"!<arch>\n")
    for name, blob in ((b"debian-binary", b"2.0\n"),
                       (b"control.tar.gz", tgz({"./control": b"Package: p\nVersion: 1\n"})),
                       (b"data.tar.gz", tgz({"./usr/bin/x": b"\x7fELF", "./etc/y": b"y"}))):
        out += (name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6)
                + b"100644".ljust(8) + str(len(blob)).encode().ljust(10) + b"`\n" + blob
                + (b"\n" if len(blob) % 2 else b""))
    return bytes(out)


def t_packages(data: bytes) -> None:
    from rdforge.sources.archive import parse_packages

    parse_packages(data, "http://deb.example/debian", "amd64")


PACKAGES_SEED = (b"Package: bash\nVersion: 5.2.37-2+b10\nArchitecture: amd64\n"
                 b"Pre-Depends: libc6 (>= 2.38), libtinfo6 (>= 6)\nDepends: base-files (>= 2.1.12)\n"
                 b"Provides: sh\nFilename: pool/main/b/bash/bash_5.2.37-2+b10_amd64.deb\n"
                 b"Size: 1500000\nSHA256: " + b"ab" * 32 + b"\n\nPackage: dash\nVersion: 1:0.5\n"
                 b"Architecture: amd64\nFilename: pool/d.deb\nSize: 9\nSHA256: " + b"cd" * 32 + b"\n")


def t_tpm2_public(data: bytes) -> None:
    from rdforge.formats import tpm2

    tpm2.parse_public(data)


def _pe_seed() -> bytes:
    """A small PE32+ image with two sections, as a UKI's stub has them."""
    import struct

    from rdforge.formats import pe

    hdr = bytearray(0x400)
    hdr[:2] = b"MZ"
    struct.pack_into("<I", hdr, 0x3C, 0x40)
    hdr[0x40:0x44] = b"PE\0\0"
    opt_size = 112 + 16 * 8
    pe.COFF.pack_into(hdr, 0x44, 0x8664, 2, 0, 0, 0, opt_size, 0x22)
    opt = 0x44 + pe.COFF.size
    struct.pack_into("<H", hdr, opt, pe.MAGIC_PE32_PLUS)
    struct.pack_into("<II", hdr, opt + pe.OPT_SECTION_ALIGNMENT, 0x1000, 0x200)
    struct.pack_into("<II", hdr, opt + pe.OPT_SIZE_OF_IMAGE, 0x3000, 0x400)
    table = opt + opt_size
    body = b""
    for i, name in enumerate((b".text", b".sbat")):
        content = name * 40
        pe.SECTION.pack_into(hdr, table + i * pe.SECTION.size, name, len(content),
                             0x1000 * (i + 1), 0x200, 0x400 + 0x200 * i, 0, 0, 0, 0, 0x40000040)
        body += content.ljust(0x200, b"\0")
    return bytes(hdr) + body


def t_pe(data: bytes) -> None:
    from rdforge.formats import pe

    pe.describe(data)


def t_inspect(data: bytes) -> None:
    from rdforge.outputs.inspect import inspect_image

    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        f.write(data)
        f.flush()
        inspect_image(Path(f.name), check=True)


def _initrd_seeds() -> list[bytes]:
    from rdforge.formats import compress

    raw = _cpio_seed()
    return [compress.compress_stream(raw, "zstd"), raw + compress.compress_stream(raw, "xz")]


RPM_SEED = Path(__file__).parent.parent / "data/rdf-fuzz-1.0-1.noarch.rpm"  # made by rpmbuild


def t_rpm(data: bytes) -> None:
    from rdforge.formats.rpm import Rpm

    r = Rpm(data, "fuzz")
    r.name, r.evr, r.signature_packet()
    list(r.files())


def t_rpm_header(data: bytes) -> None:
    """The header parser past the digests (which catch a mutation of a whole package)."""
    from rdforge.formats import rpm

    h, _ = rpm.read_header(data, 0, "fuzz")
    r = object.__new__(rpm.Rpm)
    r.what, r.header, r.signature, r.payload = "fuzz", h, h, b""
    r.paths()
    for tag in (rpm.NAME, rpm.FILEMODES, rpm.FILEUSERNAME, rpm.PAYLOADCOMPRESSOR, rpm.FILEDIGESTS):
        h.tags.get(tag)
    h.texts(rpm.BASENAMES), h.numbers(rpm.DIRINDEXES), h.binary(rpm.SIG_RSA)


def _rpm_header_seed() -> list[bytes]:
    from rdforge.formats.rpm import Rpm

    r = Rpm(RPM_SEED.read_bytes(), "seed")
    return [r.header.blob, r.signature.blob]


def t_repomd(data: bytes) -> None:
    from rdforge.formats import rpmmd

    rpmmd.parse_repomd(data)


def t_primary(data: bytes) -> None:
    from rdforge.formats import rpmmd

    for p in rpmmd.parse_primary(data):
        [d.evr for ds in p.deps.values() for d in ds]


def t_richdep(data: bytes) -> None:
    from rdforge.sources import richdep, rpmversion

    text = data.decode("utf-8", "replace")
    richdep.parse(text)
    rpmversion.compare(rpmversion.EVR.parse(text), rpmversion.EVR.parse(text[::-1] or "0"))


REPOMD_SEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1</revision>
<data type="primary"><checksum type="sha256">80e5a7598cae</checksum>
<location href="repodata/80e5-primary.xml.zst"/><size>684</size></data></repomd>"""
PRIMARY_SEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="1">
<package type="rpm"><name>a</name><arch>x86_64</arch><version epoch="2" ver="1.2~rc1" rel="3"/>
<checksum type="sha256" pkgid="YES">21e2</checksum><size package="7161"/>
<location href="Packages/a.rpm"/><format><rpm:sourcerpm>a.src.rpm</rpm:sourcerpm>
<rpm:provides><rpm:entry name="a" flags="EQ" epoch="2" ver="1.2~rc1" rel="3"/></rpm:provides>
<rpm:requires><rpm:entry name="(b or c)"/><rpm:entry name="d" flags="GE" ver="1" pre="1"/></rpm:requires>
<file>/usr/bin/a</file></format></package></metadata>"""


RELEASE_SEED = (b"Origin: Debian\nSuite: stable\nCodename: trixie\n"
                b"Date: Sat, 08 Nov 2025 10:00:00 UTC\nValid-Until: Sat, 15 Nov 2025 10:00:00 UTC\n"
                b"Acquire-By-Hash: yes\nArchitectures: amd64\nComponents: main\nSHA256:\n"
                b" " + b"ab" * 32 + b" 1234 main/binary-amd64/Packages.xz\n"
                b" " + b"cd" * 32 + b" 99 main/binary-amd64/Release\n")


def t_release(data: bytes) -> None:
    from rdforge.sources.archive import parse_release

    parse_release(data.decode("utf-8", "replace"), "trixie")


_SIGNED: dict[str, object] = {}


def _signed_index_seeds() -> list[bytes]:
    """An InRelease clearsigned with a throwaway key; the keyring is kept for the target, the
    GnuPG home (and its agent) are gone once the seed is made."""
    import atexit
    import os
    import shutil
    import subprocess

    home = Path(tempfile.mkdtemp(prefix="rdforge-fuzz-gpg-"))
    keyring = Path(tempfile.mkdtemp(prefix="rdforge-fuzz-keyring-")) / "archive.gpg"
    atexit.register(shutil.rmtree, keyring.parent, True)
    env = dict(os.environ, GNUPGHOME=str(home))
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run([*gpg, "--quick-gen-key", "rdforge fuzz <fuzz@example.org>", "rsa2048",
                        "sign", "never"], env=env, check=True, capture_output=True)
        keyring.write_bytes(subprocess.run([*gpg, "--export"], env=env, check=True,
                                           capture_output=True).stdout)
        signed = subprocess.run([*gpg, "--clearsign"], input=RELEASE_SEED, env=env, check=True,
                                capture_output=True).stdout
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    _SIGNED["keyring"] = keyring
    return [signed]


def t_signed_index(data: bytes) -> None:
    """The whole signed-index path: gpgv on a (mutated) InRelease, then the Release parser on
    what it vouches for."""
    from rdforge.sources.archive import parse_release
    from rdforge.sources.openpgp import verify_clearsigned

    keyring = _SIGNED["keyring"]
    assert isinstance(keyring, Path)
    text = verify_clearsigned(data, keyring, "fuzz InRelease")
    parse_release(text.decode("utf-8", "replace"), "trixie")


_PKI: dict[str, bytes] = {}


def _pki() -> dict[str, bytes]:
    """A throwaway RSA key, its certificate, and a PE image signed with it."""
    if not _PKI:
        from cryptography.hazmat.primitives import serialization

        from rdforge.formats import authenticode
        from rdforge.keys import genkey, load_signing_key

        with tempfile.TemporaryDirectory(prefix="rdforge-fuzz-key-") as d:
            key, cert = genkey("rdforge fuzz", Path(d), bits=2048)
            signer = load_signing_key(key, cert)
            pe_image = _pe_seed()
            _PKI.update(key=key.read_bytes(), cert=cert.read_bytes(), pe=pe_image,
                        der=signer.cert.public_bytes(serialization.Encoding.DER),
                        detached=authenticode.detached(pe_image, signer))
    return _PKI


def t_pkcs7(data: bytes) -> None:
    """A detached Authenticode signature (PKCS#7 SignedData) as `rdforge sign --attach`
    takes it from a signing service, and as inspect reads it back out of a signed image."""
    from rdforge.formats import authenticode, pe

    image = _pki()["pe"]
    try:
        authenticode.attach(image, data)
    finally:
        padded = image + b"\0" * (-len(image) % 8)
        pe.describe(authenticode.certificate_table(padded, pe.PE.parse(image), data))


def t_keys(data: bytes) -> None:
    """Key material given on the command line: certificates (PEM, DER), private keys, PCR
    signing keys."""
    from rdforge.errors import RdforgeError
    from rdforge.keys import load_cert, load_private_key
    from rdforge.outputs.credential import pcr_public_key

    with tempfile.NamedTemporaryFile(suffix=".pem") as f:
        f.write(data)
        f.flush()
        for read in (lambda: load_cert(Path(f.name)), lambda: load_private_key(Path(f.name)),
                     lambda: pcr_public_key(f.name, "11")):
            try:
                read()
            except RdforgeError:
                pass


def _ddi_seed() -> list[bytes]:
    """A signed DDI as `rdforge sysext` makes them (a small random file system)."""
    from rdforge.formats import ddi
    from rdforge.keys import genkey, load_signing_key

    with tempfile.TemporaryDirectory(prefix="rdforge-fuzz-ddi-") as d:
        key, cert = genkey("rdforge fuzz", Path(d), bits=2048)
        fs = Path(d, "fs.img")
        fs.write_bytes(random.Random(7).randbytes(8 * 4096))
        ddi.make_ddi(fs, Path(d, "x.raw"), "x", "x86-64", load_signing_key(key, cert))
        return [Path(d, "x.raw").read_bytes()]


def t_ddi(data: bytes) -> None:
    """The GPT reader and the DDI description (verity superblock, verity-sig JSON, PKCS#7),
    as `rdforge inspect` reads a sysext."""
    import struct
    import zlib

    from rdforge.formats import ddi, gpt

    try:
        ddi.describe(data, "fuzz")
    finally:
        # Again with both checksums made right, so that mutations of the table's fields
        # and of the partitions reach the readers past the CRC checks.
        fixed = bytearray(data)
        if len(fixed) >= 1024 and fixed[512:520] == b"EFI PART":
            hsize, = struct.unpack_from("<I", fixed, 524)
            elba, count, esize = struct.unpack_from("<QII", fixed, 512 + 72)
            if 92 <= hsize <= 512 and count * esize < 1 << 20 and elba < 1 << 20:
                table = bytes(fixed[elba * 512:elba * 512 + count * esize])
                struct.pack_into("<I", fixed, 512 + 88, zlib.crc32(table))
                struct.pack_into("<I", fixed, 512 + 16, 0)
                struct.pack_into("<I", fixed, 512 + 16, zlib.crc32(fixed[512:512 + hsize]))
        assert gpt.SECTOR == 512
        ddi.describe(bytes(fixed), "fuzz")


# Targets that run an outside program per input run fewer inputs in the suite.
ITERATIONS = {"signed-index": 300}


def targets() -> dict[str, tuple[Callable[[bytes], object], Callable[[], list[bytes]]]]:
    return {
        "cpio": (t_cpio, lambda: [_cpio_seed()]),
        "decompress": (t_decompress, _compress_seeds),
        "elf": (t_elf, lambda: [Path("/usr/bin/true").read_bytes()]),
        "credentials": (t_creds, _creds_seeds),
        "credential-header": (t_creds_header, _creds_header_seeds),
        "deb822": (t_stanzas, lambda: [b"Package: a\nVersion: 1\n Description: x\n\nPackage: b\n"]),
        "lock": (t_lock, lambda: [_lock_seed()]),
        "toml": (t_toml, lambda: [b"[build]\ncompression = 'xz'\nadd_packages = ['hello']\n"]),
        "deb": (t_deb, lambda: [_deb_seed()]),
        "packages": (t_packages, lambda: [PACKAGES_SEED]),
        "tpm2-public": (t_tpm2_public, lambda: [
            (Path(__file__).parent.parent / "data/swtpm-srk.tpm2b_public").read_bytes()]),
        "pe": (t_pe, lambda: [_pe_seed()]),
        "inspect": (t_inspect, _initrd_seeds),
        "rpm": (t_rpm, lambda: [RPM_SEED.read_bytes()]),
        "rpm-header": (t_rpm_header, _rpm_header_seed),
        "repomd": (t_repomd, lambda: [REPOMD_SEED]),
        "primary": (t_primary, lambda: [PRIMARY_SEED]),
        "release": (t_release, lambda: [RELEASE_SEED]),
        "gpt-ddi": (t_ddi, _ddi_seed),
        "signed-index": (t_signed_index, _signed_index_seeds),
        "pkcs7": (t_pkcs7, lambda: [_pki()["detached"]]),
        "keys": (t_keys, lambda: [_pki()["cert"], _pki()["der"], _pki()["key"]]),
        "richdep": (t_richdep, lambda: [b"(a >= 1.0 or (b if c else d))", b"1:2.3~rc1^git5-4.fc41"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iterations", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", nargs="*")
    ns = ap.parse_args()
    print(f"{'parser':12} {'inputs':>8} {'crashes':>8} {'hangs':>6}")
    bad = 0
    for name, (target, seeds) in targets().items():
        if ns.only and name not in ns.only:
            continue
        r = run(target, seeds(), min(ns.iterations, ITERATIONS.get(name, ns.iterations)), ns.seed)
        print(f"{name:12} {r.runs:8} {len(r.crashes):8} {r.hangs:6}")
        for where, (what, _data) in r.crashes.items():
            print(f"    {where}: {what}")
        bad += len(r.crashes) + r.hangs
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
