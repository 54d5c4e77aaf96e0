"""The initramfs "newc" cpio format (Linux Documentation/driver-api/early-userspace/
buffer-format.rst): writing deterministically, reading back, and concatenated segments."""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from rdforge.errors import FormatError

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass
class CpioEntry:
    name: str  # no leading slash
    mode: int  # full st_mode
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    data: bytes = b""  # file content, or symlink target
    rdev: tuple[int, int] = (0, 0)
    ino_key: object = None  # entries with the same non-None key are hard links


def _pad(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


def _header(ino: int, mode: int, uid: int, gid: int, nlink: int, mtime: int, size: int,
            rdev: tuple[int, int], namesize: int) -> bytes:
    fields = (ino, mode, uid, gid, nlink, mtime, size, 0, 0, rdev[0], rdev[1], namesize, 0)
    if not all(0 <= f <= 0xFFFFFFFF for f in fields):
        raise FormatError("a newc cpio field holds 8 hex digits (0 to 2^32-1): "
                          f"mtime {mtime}, size {size}, uid {uid}, gid {gid} cannot all be written")
    return MAGIC + b"".join(b"%08X" % f for f in fields)


class CpioWriter:
    """Streams newc records to a binary file object; inode numbers are given in order."""

    def __init__(self, out: Sink | BinaryIO) -> None:
        self.out = out
        self.ino = 0
        self.links: dict[object, int] = {}
        self.written = 0

    def _write(self, b: bytes) -> None:
        self.out.write(b)
        self.written += len(b)

    def add(self, e: CpioEntry, nlink: int = 1) -> None:
        name = e.name.encode() + b"\0"
        data = e.data
        if e.ino_key is not None and e.ino_key in self.links:
            ino = self.links[e.ino_key]
            data = b""  # later hard links carry no data; the first one did
        else:
            self.ino += 1
            ino = self.ino
            if e.ino_key is not None:
                self.links[e.ino_key] = ino
        if stat.S_ISDIR(e.mode):
            nlink = max(nlink, 2)
        hdr = _header(ino, e.mode, e.uid, e.gid, nlink, e.mtime, len(data), e.rdev, len(name))
        self._write(hdr + name + _pad(len(hdr) + len(name)))
        if data:
            self._write(data)
            if len(data) % 4:
                self._write(_pad(len(data)))

    def finish(self) -> None:
        self.ino += 1
        name = TRAILER.encode() + b"\0"
        hdr = _header(0, 0, 0, 0, 1, 0, 0, (0, 0), len(name))
        self._write(hdr + name + _pad(len(hdr) + len(name)))
        # Pad the archive to 512 bytes like GNU cpio does, so tools agree on the end.
        self._write(b"\0" * ((512 - self.written % 512) % 512))


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def write(out: Sink | BinaryIO, entries: Iterable[CpioEntry]) -> None:
    entries = list(entries)
    counts: dict[object, int] = {}
    for e in entries:
        if e.ino_key is not None:
            counts[e.ino_key] = counts.get(e.ino_key, 0) + 1
    w = CpioWriter(out)
    for e in entries:
        w.add(e, counts.get(e.ino_key, 1) if e.ino_key is not None else 1)
    w.finish()


def _relative(name: str) -> str:
    """A member name without its leading "./" or "/" ("." itself is ""); `..` is kept for
    the reader to judge, not stripped into another name."""
    while name.startswith(("./", "/")):
        name = name[1:].lstrip("/") if name.startswith("/") else name[2:]
    return "" if name == "." else name


def read(buf: bytes, offset: int = 0) -> tuple[list[CpioEntry], int]:
    """Parse one newc archive from offset; returns its entries and the offset after TRAILER."""
    out: list[CpioEntry] = []
    pos = offset
    seen: dict[tuple[int, int, int], CpioEntry] = {}
    while True:
        if buf[pos:pos + 6] not in (MAGIC, b"070702"):
            raise FormatError(f"bad cpio magic at offset {pos}")
        try:
            f = [int(buf[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise FormatError(f"corrupt cpio header at offset {pos}") from None
        ino, mode, uid, gid, nlink, mtime, size, dmaj, dmin, rmaj, rmin, namesize, _ = f
        pos += 110
        name = buf[pos:pos + namesize - 1].decode("utf-8", "surrogateescape")
        pos += namesize
        pos += (4 - pos % 4) % 4
        data = bytes(buf[pos:pos + size])
        if len(data) != size:
            raise FormatError(f"truncated cpio member {name!r}")
        pos += size
        pos += (4 - pos % 4) % 4
        if name == TRAILER:
            return out, pos
        key = (dmaj, dmin, ino)
        e = CpioEntry(_relative(name), mode, uid, gid,
                      mtime, data, (rmaj, rmin), key if nlink > 1 and stat.S_ISREG(mode) else None)
        if e.ino_key is not None and not data and key in seen:
            e.data = seen[key].data
        elif e.ino_key is not None:
            seen[key] = e
        out.append(e)


def segments(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """Split an initrd into its (offset, segment) parts: uncompressed cpio archives and
    compressed streams, as the kernel walks them (zero padding between them is skipped)."""
    pos = 0
    while pos < len(buf):
        while pos < len(buf) and buf[pos] == 0:
            pos += 1
        if pos >= len(buf):
            return
        if buf[pos:pos + 5] == MAGIC[:5]:
            _entries, end = read(buf, pos)
            yield pos, buf[pos:end]
            pos = end
        else:
            yield pos, buf[pos:]
            return
