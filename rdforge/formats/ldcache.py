"""glibc's ld.so.cache in the "new" format (glibc-ld.so.cache1.1), as ldconfig writes it."""

from __future__ import annotations

import struct

MAGIC = b"glibc-ld.so.cache1.1"
FLAG_ELF_LIBC6 = 0x0003
FLAG_X8664_LIB64 = 0x0300
ENDIAN_LITTLE = 2
HEADER = struct.Struct("<20sIIB3xI12x")  # magic+version, nlibs, len_strings, flags, ext offset
ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion, hwcap


def _libcmp(a: str, b: str) -> int:
    """glibc's _dl_cache_libcmp: digit runs compare as numbers."""
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i].isdigit() and b[j].isdigit():
            si = i
            while i < len(a) and a[i].isdigit():
                i += 1
            sj = j
            while j < len(b) and b[j].isdigit():
                j += 1
            va, vb = int(a[si:i]), int(b[sj:j])
            if va != vb:
                return -1 if va < vb else 1
        elif a[i].isdigit():
            return 1
        elif b[j].isdigit():
            return -1
        elif a[i] != b[j]:
            return -1 if a[i] < b[j] else 1
        else:
            i += 1
            j += 1
    return (len(a) - i > 0) - (len(b) - j > 0)


def build(libs: dict[str, str]) -> bytes:
    """libs: soname -> absolute path. Entries sorted as ld.so's binary search expects."""
    import functools

    def descending(x: str, y: str) -> int:
        return _libcmp(y, x)

    names = sorted(libs, key=functools.cmp_to_key(descending))
    start = HEADER.size + ENTRY.size * len(names)
    strings = bytearray()
    offsets: dict[str, int] = {}

    def intern(s: str) -> int:
        if s not in offsets:
            offsets[s] = start + len(strings)
            strings.extend(s.encode() + b"\0")
        return offsets[s]

    entries = bytearray()
    for n in names:
        k = intern(n)
        v = intern(libs[n])
        entries += ENTRY.pack(FLAG_ELF_LIBC6 | FLAG_X8664_LIB64, k, v, 0, 0)
    head = HEADER.pack(MAGIC, len(names), len(strings), ENDIAN_LITTLE, 0)
    return bytes(head + entries + strings)
