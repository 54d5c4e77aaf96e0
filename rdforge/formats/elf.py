"""Just enough ELF64 little-endian to read dynamic dependencies, dlopen notes and .modinfo."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from rdforge.errors import FormatError

ELF_MAGIC = b"\x7fELF"
DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH = 1, 14, 15, 29
SHT_NOTE, SHT_DYNAMIC = 7, 6
NT_FDO_DLOPEN_METADATA = 0x407C0C0A


@dataclass
class ElfInfo:
    needed: list[str] = field(default_factory=list)
    soname: str = ""
    runpath: list[str] = field(default_factory=list)
    interp: str = ""
    dlopen: list[dict[str, object]] = field(default_factory=list)  # .note.dlopen entries


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def _sections(data: bytes) -> list[tuple[str, int, int, int, int]]:
    """(name, type, offset, size, link) of every section header."""
    if len(data) < 64 or data[4] != 2 or data[5] != 1:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if not shoff or shoff + shnum * shentsize > len(data):
        return []
    raw = []
    for i in range(shnum):
        name, typ, _flags, _addr, off, size, link = struct.unpack_from(
            "<IIQQQQI", data, shoff + i * shentsize)
        raw.append((name, typ, off, size, link))
    strtab_off, strtab_size = raw[shstrndx][2], raw[shstrndx][3]
    strtab = data[strtab_off:strtab_off + strtab_size]
    out = []
    for name, typ, off, size, link in raw:
        end = strtab.find(b"\0", name)
        out.append((strtab[name:end].decode("ascii", "replace"), typ, off, size, link))
    return out


def section(data: bytes, wanted: str) -> bytes | None:
    try:
        secs = _sections(data)
    except MALFORMED as e:
        raise FormatError(f"malformed ELF file ({type(e).__name__}: {str(e)[:80]})") from None
    for name, _typ, off, size, _link in secs:
        if name == wanted:
            return data[off:off + size]
    return None


# What a malformed header or table raises on the way (an offset past the end, a count that
# does not fit): the readers below turn it into a FormatError.
MALFORMED = (struct.error, OverflowError, IndexError, ValueError, MemoryError)


def read_elf(data: bytes) -> ElfInfo:
    """Dynamic section entries, PT_INTERP and systemd's .note.dlopen of an ELF64 LE file."""
    try:
        return _read_elf(data)
    except MALFORMED as e:
        raise FormatError(f"malformed ELF file ({type(e).__name__}: {str(e)[:80]})") from None


def _read_elf(data: bytes) -> ElfInfo:
    info = ElfInfo()
    secs = _sections(data)
    for name, typ, off, size, link in secs:
        if typ == SHT_DYNAMIC:
            str_off, str_size = secs[link][2], secs[link][3]
            strs = data[str_off:str_off + str_size]

            def s(i: int, strs: bytes = strs) -> str:
                return strs[i:strs.find(b"\0", i)].decode("utf-8", "replace")

            for j in range(0, size, 16):
                tag, val = struct.unpack_from("<qQ", data, off + j)
                if tag == 0:
                    break
                if tag == DT_NEEDED:
                    info.needed.append(s(val))
                elif tag == DT_SONAME:
                    info.soname = s(val)
                elif tag in (DT_RUNPATH, DT_RPATH):
                    info.runpath += s(val).split(":")
        elif name == ".interp":
            info.interp = data[off:off + size].rstrip(b"\0").decode("utf-8", "replace")
        elif typ == SHT_NOTE and name == ".note.dlopen":
            info.dlopen += _dlopen_notes(data[off:off + size])
    return info


def _dlopen_notes(blob: bytes) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    pos = 0
    while pos + 12 <= len(blob):
        namesz, descsz, typ = struct.unpack_from("<III", blob, pos)
        pos += 12
        name = blob[pos:pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = blob[pos:pos + descsz].rstrip(b"\0")
        pos += (descsz + 3) & ~3
        if name == b"FDO" and typ == NT_FDO_DLOPEN_METADATA:
            try:
                parsed = json.loads(desc)
            except ValueError:
                continue
            if isinstance(parsed, list):
                out += [d for d in parsed if isinstance(d, dict)]
    return out


def modinfo(data: bytes) -> list[tuple[str, str]]:
    """The key=value pairs of a kernel module's .modinfo section, in order."""
    sec = section(data, ".modinfo")
    if sec is None:
        return []
    out = []
    for item in sec.split(b"\0"):
        if b"=" in item:
            k, _, v = item.partition(b"=")
            out.append((k.decode("ascii", "replace"), v.decode("utf-8", "replace")))
    return out
