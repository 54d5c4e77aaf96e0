"""PE32+ images (the UEFI executable format): read the section table, and append sections to
a stub the way a Unified Kernel Image is assembled. Also reads the Authenticode certificate
table's signer certificates.

Section placement follows the UKI convention: each new section's header goes after the last
one (within the existing header space), its data at the end of the file aligned to
FileAlignment, its virtual address after the previous section aligned to SectionAlignment.
A section the stub already has (.sbat) is replaced in place if the new content fits."""

from __future__ import annotations

import hashlib
import struct
import warnings
from dataclasses import dataclass

from rdforge.errors import FormatError

COFF = struct.Struct("<HHIIIHH")  # machine, nsections, time, symtab, nsyms, opt size, chars
SECTION = struct.Struct("<8sIIIIIIHHI")
SCN_CNT_CODE = 0x20
SCN_CNT_INITIALIZED_DATA = 0x40
SCN_MEM_READ = 0x40000000
DLL_NX_COMPAT = 0x0100
MAGIC_PE32_PLUS = 0x20B
# Offsets inside the PE32+ optional header.
OPT_SIZE_OF_INIT_DATA = 8
OPT_SECTION_ALIGNMENT = 32
OPT_FILE_ALIGNMENT = 36
OPT_SIZE_OF_IMAGE = 56
OPT_SIZE_OF_HEADERS = 60
OPT_CHECKSUM = 64
OPT_DLL_CHARACTERISTICS = 70
OPT_DATA_DIRECTORIES = 112
SECURITY_DIRECTORY = 4


# What a malformed header raises on the way (offsets past the end, counts that do not fit).
MALFORMED = (struct.error, OverflowError, IndexError, ValueError, MemoryError)


def _up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass
class Section:
    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_pointer: int
    characteristics: int
    header_offset: int

    def data(self, image: bytes) -> bytes:
        return image[self.raw_pointer:self.raw_pointer + min(self.virtual_size, self.raw_size)]


@dataclass
class PE:
    image: bytearray
    coff_offset: int
    opt_offset: int
    sections: list[Section]

    @classmethod
    def parse(cls, data: bytes) -> PE:
        try:
            return cls._parse(data)
        except MALFORMED as e:
            raise FormatError(f"malformed PE image ({type(e).__name__}: {str(e)[:80]})") from None

    @classmethod
    def _parse(cls, data: bytes) -> PE:
        if data[:2] != b"MZ" or len(data) < 0x40:
            raise FormatError("not a PE image (no MZ header)")
        pe_off = struct.unpack_from("<I", data, 0x3C)[0]
        if data[pe_off:pe_off + 4] != b"PE\0\0":
            raise FormatError("not a PE image (no PE signature)")
        coff = pe_off + 4
        _m, nsec, _t, _symtab, _nsyms, opt_size, _c = COFF.unpack_from(data, coff)
        opt = coff + COFF.size
        if struct.unpack_from("<H", data, opt)[0] != MAGIC_PE32_PLUS:
            raise FormatError("not a PE32+ image")
        secs = []
        table = opt + opt_size
        for i in range(nsec):
            off = table + i * SECTION.size
            name, vsize, va, rsize, rptr, _r, _l, _nr, _nl, chars = SECTION.unpack_from(data, off)
            secs.append(Section(name.rstrip(b"\0").decode("ascii", "replace"), vsize, va, rsize,
                                rptr, chars, off))
        return cls(bytearray(data), coff, opt, secs)

    def _u32(self, opt_field: int) -> int:
        return int(struct.unpack_from("<I", self.image, self.opt_offset + opt_field)[0])

    def _set_u32(self, opt_field: int, value: int) -> None:
        struct.pack_into("<I", self.image, self.opt_offset + opt_field, value)

    @property
    def file_alignment(self) -> int:
        return self._u32(OPT_FILE_ALIGNMENT)

    @property
    def section_alignment(self) -> int:
        return self._u32(OPT_SECTION_ALIGNMENT)

    @property
    def security(self) -> tuple[int, int]:
        off = self.opt_offset + OPT_DATA_DIRECTORIES + SECURITY_DIRECTORY * 8
        va, size = struct.unpack_from("<II", self.image, off)
        return int(va), int(size)

    @property
    def dll_characteristics(self) -> int:
        return int(struct.unpack_from("<H", self.image, self.opt_offset + OPT_DLL_CHARACTERISTICS)[0])

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def _write_header(self, s: Section) -> None:
        SECTION.pack_into(self.image, s.header_offset, s.name.encode().ljust(8, b"\0"),
                          s.virtual_size, s.virtual_address, s.raw_size, s.raw_pointer, 0, 0, 0, 0,
                          s.characteristics)

    def add_section(self, name: str, data: bytes, original: int) -> None:
        """Append (or, for one of the first `original` sections, replace in place)."""
        if len(name.encode()) > 8:
            raise FormatError(f"PE section name {name!r} longer than 8 bytes")
        fa, sa = self.file_alignment, self.section_alignment
        for s in self.sections[:original]:
            if s.name == name:
                if len(data) > s.raw_size:
                    raise FormatError(f"{name}: {len(data)} bytes do not fit the stub's section "
                                      f"of {s.raw_size}")
                self.image[s.raw_pointer:s.raw_pointer + s.raw_size] = data.ljust(s.raw_size, b"\0")
                s.virtual_size = len(data)
                self._write_header(s)
                return
        last = self.sections[-1]
        hdr = last.header_offset + SECTION.size
        if hdr + SECTION.size > self._u32(OPT_SIZE_OF_HEADERS):
            raise FormatError(f"no header space left in the stub for section {name}")
        ptr = _up(len(self.image), fa)
        chars = SCN_MEM_READ | (SCN_CNT_CODE if name == ".linux" else SCN_CNT_INITIALIZED_DATA)
        s = Section(name, len(data), _up(last.virtual_address + last.virtual_size, sa),
                    _up(len(data), fa), ptr, chars, hdr)
        self.image += b"\0" * (ptr - len(self.image)) + data + b"\0" * (s.raw_size - len(data))
        self.sections.append(s)
        self._write_header(s)
        struct.pack_into("<H", self.image, self.coff_offset + 2, len(self.sections))
        self._set_u32(OPT_SIZE_OF_INIT_DATA, self._u32(OPT_SIZE_OF_INIT_DATA) + len(data))

    def finish(self) -> bytes:
        last = self.sections[-1]
        self._set_u32(OPT_CHECKSUM, 0)
        self._set_u32(OPT_SIZE_OF_IMAGE, _up(last.virtual_address + last.virtual_size,
                                             self.section_alignment))
        return bytes(self.image)

    def clear_nx_compat(self) -> None:
        off = self.opt_offset + OPT_DLL_CHARACTERISTICS
        struct.pack_into("<H", self.image, off, self.dll_characteristics & ~DLL_NX_COMPAT)


def build_from_stub(stub: bytes, sections: list[tuple[str, bytes]]) -> bytes:
    """The stub with `sections` added in order (a section named like one of the stub's own
    replaces it). A kernel (.linux) without NX_COMPAT clears the flag on the whole image, as
    firmware that enforces it would otherwise refuse the kernel later."""
    pe = PE.parse(stub)
    if pe.security != (0, 0):
        raise FormatError("the stub is signed; an image is signed after it is assembled")
    if struct.unpack_from("<I", stub, pe.coff_offset + 8)[0]:
        raise FormatError("the stub carries a COFF symbol table; use a stripped stub")
    for s in pe.sections:
        if s.raw_pointer % pe.file_alignment or s.raw_size % pe.file_alignment:
            raise FormatError(f"stub section {s.name} is not aligned to the file alignment")
    original = len(pe.sections)
    for name, data in sections:
        if name == ".linux":
            try:
                if not PE.parse(data).dll_characteristics & DLL_NX_COMPAT:
                    pe.clear_nx_compat()
            except FormatError:
                raise FormatError("the kernel image is not a PE (no EFI stub)") from None
        pe.add_section(name, data, original)
    return pe.finish()


def merge_sbat(pes: list[bytes], extra: str) -> bytes:
    """One SBAT table: the header line once, then the entries of each PE's .sbat and `extra`."""
    lines: list[str] = []
    for data in pes:
        s = PE.parse(data).section(".sbat")
        if s is None:
            continue
        text = s.data(data).rstrip(b"\0").decode()
        rows = text.splitlines()
        if rows and rows[0].startswith("sbat,"):
            lines += rows[1:]
    rows = extra.splitlines()
    lines += rows[1:] if rows and rows[0].startswith("sbat,") else rows
    head = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n"
    return (head + "\n".join(lines) + "\n\0").encode()


def describe(data: bytes) -> dict[str, object]:
    """Sections with sizes and hashes, and the Authenticode signers' subjects."""
    pe = PE.parse(data)
    out: dict[str, object] = {
        "sections": [{"name": s.name, "virtual_address": s.virtual_address,
                      "size": s.virtual_size, "sha256": hashlib.sha256(s.data(data)).hexdigest()}
                     for s in pe.sections],
        "signers": signers(data),
    }
    return out


def signers(data: bytes) -> list[str]:
    """Subjects of the certificates in the Authenticode signature(s), if any."""
    try:
        return _signers(data)
    except MALFORMED as e:
        raise FormatError(f"malformed PE certificate table ({type(e).__name__})") from None


def pkcs7_signers(blob: bytes) -> list[str]:
    """The subjects of the certificates a PKCS#7 SignedData (DER) carries; an unreadable
    one is named so, never raised."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509 import InvalidVersion

    try:
        with warnings.catch_warnings():  # Authenticode's SpcIndirectData is not plain DER data
            warnings.simplefilter("ignore")
            certs = pkcs7.load_der_pkcs7_certificates(blob)
        return [c.subject.rfc4514_string() for c in certs]
    except (ValueError, UnsupportedAlgorithm, InvalidVersion):
        return ["(unreadable signature)"]


def _signers(data: bytes) -> list[str]:
    pe = PE.parse(data)
    off, size = pe.security
    out: list[str] = []
    end = off + size
    while off and off + 8 <= end:
        length, _rev, _type = struct.unpack_from("<IHH", data, off)
        if length < 8:
            break
        out += pkcs7_signers(bytes(data[off + 8:off + length]))
        off += _up(length, 8)
    return out
