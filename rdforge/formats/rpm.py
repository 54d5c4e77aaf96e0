"""Reading .rpm files: the lead, the signature header, the header and the cpio payload
(zstd, xz, gzip or plain), as rpm 4 writes them (rpm's doc/manual/format.md and tags in
rpmtag.h). Bytes only: which key signed a header is checked by the package source.

Layout: a 96-byte lead (only its magic matters today), the signature header padded to a
multiple of 8 bytes, the header, then the compressed payload. A header is a magic and
version (`8e ad e8 01`), 4 reserved bytes, the number of index entries and the size of the
data store (big-endian 32-bit), the index entries (tag, type, offset, count: 16 bytes each)
and the data store they point into.

What the header says about the files (modes, owners, link targets, digests, %ghost flags)
is what counts; the cpio payload's own fields are only checked against it. A file is
matched to its header entry by name, its content by the header's digest."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rdforge.errors import FormatError
from rdforge.formats import cpio

LEAD_MAGIC = b"\xed\xab\xee\xdb"
HEADER_MAGIC = b"\x8e\xad\xe8\x01"
LEAD_SIZE = 96
MAX_HEADER = 256 << 20  # rpm's own limit on a header's index plus data store

# Types of header values.
NULL, CHAR, INT8, INT16, INT32, INT64, STRING, BIN, STRING_ARRAY, I18NSTRING = range(10)
_INT = {CHAR: (1, "B"), INT8: (1, "B"), INT16: (2, "H"), INT32: (4, "I"), INT64: (8, "Q")}

# Header tags (rpmtag.h).
NAME, VERSION, RELEASE, EPOCH, SUMMARY = 1000, 1001, 1002, 1003, 1004
ARCH, OS, SOURCERPM, LICENSE = 1022, 1021, 1044, 1014
FILESIZES, FILEMODES, FILERDEVS, FILEMTIMES = 1028, 1030, 1033, 1034
FILEDIGESTS, FILELINKTOS, FILEFLAGS, FILEUSERNAME, FILEGROUPNAME = 1035, 1036, 1037, 1039, 1040
PROVIDENAME, REQUIREFLAGS, REQUIRENAME, REQUIREVERSION = 1047, 1048, 1049, 1050
CONFLICTFLAGS, CONFLICTNAME, CONFLICTVERSION = 1053, 1054, 1055
OBSOLETENAME, PROVIDEFLAGS, PROVIDEVERSION, OBSOLETEFLAGS, OBSOLETEVERSION = 1090, 1112, 1113, 1114, 1115
DIRINDEXES, BASENAMES, DIRNAMES = 1116, 1117, 1118
PAYLOADFORMAT, PAYLOADCOMPRESSOR = 1124, 1125
LONGFILESIZES, FILEDIGESTALGO = 5008, 5011
PAYLOADDIGEST, PAYLOADDIGESTALGO = 5092, 5093

# Signature header tags: header-only digests and signatures (rpm >= 4.14 signs the header,
# which holds the payload's digest).
SIG_SIZE, SIG_MD5, SIG_PGP, SIG_DSA, SIG_RSA, SIG_SHA1, SIG_SHA256 = 1000, 1004, 1002, 267, 268, 269, 273
SIG_LONGSIZE = 270

RPMFILE_GHOST = 1 << 6  # %ghost: listed in the header, not in the payload
DIGEST_ALGOS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}

# Dependency flags (rpmds.h): comparison, and where a Requires comes from.
SENSE_LESS, SENSE_GREATER, SENSE_EQUAL = 1 << 1, 1 << 2, 1 << 3
RPMSENSE_RPMLIB = 1 << 24  # rpmlib(...) features the installing rpm must have
RPMSENSE_PREREQ_MASK = (1 << 6) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11)


Value = str | bytes | list[str] | list[int]


@dataclass(frozen=True)
class Header:
    """A parsed header: tag -> value, and the exact bytes it was read from (what a
    signature covers)."""

    tags: dict[int, Value]
    blob: bytes

    def text(self, tag: int, default: str = "") -> str:
        v: object = self.tags.get(tag, default)
        if isinstance(v, list):  # an I18NSTRING: its first (the C locale's) text
            v = v[0] if v else default
        if not isinstance(v, str):
            raise FormatError(f"rpm header tag {tag} is not a string")
        return v

    def texts(self, tag: int) -> list[str]:
        v = self.tags.get(tag, [])
        if isinstance(v, str):
            return [v]
        if not isinstance(v, list) or any(not isinstance(x, str) for x in v):
            raise FormatError(f"rpm header tag {tag} is not a string array")
        return v  # type: ignore[return-value]

    def numbers(self, tag: int) -> list[int]:
        v = self.tags.get(tag, [])
        if not isinstance(v, list) or any(not isinstance(x, int) for x in v):
            raise FormatError(f"rpm header tag {tag} is not a number array")
        return v  # type: ignore[return-value]

    def binary(self, tag: int) -> bytes | None:
        v = self.tags.get(tag)
        if v is not None and not isinstance(v, bytes):
            raise FormatError(f"rpm header tag {tag} is not binary")
        return v


def read_header(buf: bytes, pos: int, what: str) -> tuple[Header, int]:
    """The header at pos and the offset just after it."""
    if buf[pos:pos + 4] != HEADER_MAGIC:
        raise FormatError(f"{what}: no rpm header at offset {pos}")
    if len(buf) < pos + 16:
        raise FormatError(f"{what}: truncated header at offset {pos}")
    nindex, hsize = struct.unpack(">II", buf[pos + 8:pos + 16])
    index_end = pos + 16 + 16 * nindex
    end = index_end + hsize
    if 16 * nindex + hsize > MAX_HEADER:
        raise FormatError(f"{what}: header at offset {pos} claims {16 * nindex + hsize} bytes")
    if len(buf) < end:
        raise FormatError(f"{what}: truncated header at offset {pos}")
    store = buf[index_end:end]
    tags: dict[int, Value] = {}
    for i in range(nindex):
        tag, typ, off, count = struct.unpack(">iIiI", buf[pos + 16 + 16 * i:pos + 32 + 16 * i])
        if off < 0 or off > hsize or count > hsize:
            raise FormatError(f"{what}: header entry {tag} points outside the header")
        tags[tag] = _value(store, typ, off, count, tag, what)
    return Header(tags, bytes(buf[pos:end])), end


def _value(store: bytes, typ: int, off: int, count: int, tag: int, what: str) -> Value:
    bad = FormatError(f"{what}: header entry {tag} (type {typ}) runs past the header")
    if typ in _INT:
        size, code = _INT[typ]
        if off + size * count > len(store):
            raise bad
        return list(struct.unpack(f">{count}{code}", store[off:off + size * count]))
    if typ == BIN:
        if off + count > len(store):
            raise bad
        return bytes(store[off:off + count])
    if typ in (STRING, STRING_ARRAY, I18NSTRING):
        out: list[str] = []
        for _ in range(count if typ != STRING else 1):
            end = store.find(b"\0", off)
            if end < 0:
                raise bad
            out.append(store[off:end].decode("utf-8", "surrogateescape"))
            off = end + 1
        return out[0] if typ == STRING else out
    if typ == NULL:
        return []
    raise FormatError(f"{what}: header entry {tag} has unknown type {typ}")


@dataclass(frozen=True)
class RpmFile:
    """One file the header lists, with its content when it is a regular file."""

    path: str  # without the leading slash
    mode: int
    user: str
    group: str
    link: str  # symlink target
    digest: str  # hex, in the package's digest algorithm; "" for non-regular files
    ghost: bool
    data: bytes | None


class Rpm:
    """An .rpm read into memory: its signature header, header and (still compressed)
    payload."""

    def __init__(self, data: bytes, what: str) -> None:
        self.what = what
        if data[:4] != LEAD_MAGIC or len(data) < LEAD_SIZE:
            raise FormatError(f"{what}: not an rpm package (no lead)")
        self.signature, pos = read_header(data, LEAD_SIZE, what)
        pos += (8 - pos % 8) % 8
        self.header, pos = read_header(data, pos, what)
        self.payload = data[pos:]
        self._check_digests()

    @classmethod
    def open(cls, path: Path) -> Rpm:
        return cls(path.read_bytes(), str(path))

    def _check_digests(self) -> None:
        """The signature header's SHA256 of the header, and the header's digest of the
        payload: a damaged package is refused before anything is read from it."""
        sha = self.signature.tags.get(SIG_SHA256)
        if sha is not None and sha != hashlib.sha256(self.header.blob).hexdigest():
            raise FormatError(f"{self.what}: header digest mismatch (damaged package)")
        want = self.header.texts(PAYLOADDIGEST)
        if want:
            algo = DIGEST_ALGOS.get((self.header.numbers(PAYLOADDIGESTALGO) or [8])[0])
            if algo is None:
                raise FormatError(f"{self.what}: unknown payload digest algorithm")
            if hashlib.new(algo, self.payload).hexdigest() != want[0]:
                raise FormatError(f"{self.what}: payload digest mismatch (damaged package)")
        elif sha is None:
            raise FormatError(f"{self.what}: no header or payload digest (not rpm 4.14 or later)")

    @property
    def name(self) -> str:
        return self.header.text(NAME)

    @property
    def evr(self) -> str:
        e = self.header.numbers(EPOCH)
        v, r = self.header.text(VERSION), self.header.text(RELEASE)
        return f"{e[0]}:{v}-{r}" if e else f"{v}-{r}"

    @property
    def arch(self) -> str:
        return self.header.text(ARCH)

    def signature_packet(self) -> bytes | None:
        """The OpenPGP signature over the header (RSA or, for EdDSA/ECDSA keys, the DSA
        tag), which the package source checks against the distribution's key."""
        return self.signature.binary(SIG_RSA) or self.signature.binary(SIG_DSA)

    def paths(self) -> list[str]:
        dirs, bases = self.header.texts(DIRNAMES), self.header.texts(BASENAMES)
        idx = self.header.numbers(DIRINDEXES)
        if not (len(bases) == len(idx)) or any(i >= len(dirs) for i in idx):
            raise FormatError(f"{self.what}: file list tags do not agree")
        return [(dirs[i] + b) for i, b in zip(idx, bases, strict=True)]

    def _payload_stream(self) -> bytes:
        comp = self.header.text(PAYLOADCOMPRESSOR, "gzip")
        fmt = self.header.text(PAYLOADFORMAT, "cpio")
        if fmt != "cpio":
            raise FormatError(f"{self.what}: payload format {fmt!r} is not cpio")
        try:
            if comp == "zstd":
                import zstandard

                return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(self.payload)).read()
            if comp in ("xz", "lzma"):
                import lzma

                return lzma.decompress(self.payload)
            if comp == "gzip":
                import gzip

                return gzip.decompress(self.payload)
            if comp == "bzip2":
                import bz2

                return bz2.decompress(self.payload)
        except Exception as err:  # each library has its own error types
            raise FormatError(f"{self.what}: corrupt {comp} payload ({err})") from None
        if comp in ("", "identity", "none"):
            return self.payload
        raise FormatError(f"{self.what}: unsupported payload compression {comp!r}")

    def files(self, max_file: int | None = None) -> Iterator[RpmFile]:
        """Every file the header lists, in the header's order; regular files with content
        checked against the header's digests."""
        h = self.header
        paths = self.paths()
        n = len(paths)
        modes, flags = h.numbers(FILEMODES), h.numbers(FILEFLAGS) or [0] * n
        users, groups = h.texts(FILEUSERNAME), h.texts(FILEGROUPNAME)
        links, digests = h.texts(FILELINKTOS) or [""] * n, h.texts(FILEDIGESTS) or [""] * n
        sizes = h.numbers(LONGFILESIZES) or h.numbers(FILESIZES)
        if any(len(x) != n for x in (modes, flags, users, groups, links, digests, sizes)):
            raise FormatError(f"{self.what}: file tags do not agree on the number of files")
        algo = DIGEST_ALGOS.get((h.numbers(FILEDIGESTALGO) or [1])[0])
        if algo is None:
            raise FormatError(f"{self.what}: unknown file digest algorithm")
        for p, size in zip(paths, sizes, strict=True):
            if max_file is not None and size > max_file:
                raise FormatError(f"{self.what}: {p} is {size >> 20} MiB, over the limit of "
                                  f"{max_file >> 20} MiB for one file (max_file_size)")
        try:
            entries, _ = cpio.read(self._payload_stream())
        except FormatError as err:
            raise FormatError(f"{self.what}: corrupt payload ({err})") from None
        # rpm writes a hard-linked file's content once, with the last of its names.
        shared = {e.ino_key: e.data for e in entries if e.ino_key is not None and e.data}
        for e in entries:
            if e.ino_key is not None and not e.data:
                e.data = shared.get(e.ino_key, b"")
        content = {e.name: e for e in entries}
        for i, p in enumerate(paths):
            mode, ghost = modes[i] & 0xFFFF, bool(flags[i] & RPMFILE_GHOST)
            rel = p.lstrip("/")
            data = None
            if not ghost:
                got = content.pop(rel, None)
                if got is None:
                    raise FormatError(f"{self.what}: {p} is in the header but not the payload")
                if stat.S_IFMT(got.mode) != stat.S_IFMT(mode):
                    raise FormatError(f"{self.what}: {p} has another file type in the payload")
                if stat.S_ISREG(mode):
                    data = got.data
                    if hashlib.new(algo, data).hexdigest() != digests[i]:
                        raise FormatError(f"{self.what}: {p} does not match its digest")
            yield RpmFile(rel, mode, users[i], groups[i], links[i],
                          digests[i] if stat.S_ISREG(mode) else "", ghost, data)
        if content:
            raise FormatError(f"{self.what}: payload holds files the header does not list "
                              f"({sorted(content)[0]})")
