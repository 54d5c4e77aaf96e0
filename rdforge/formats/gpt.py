"""GUID partition tables (UEFI specification, chapter 5): protective MBR, primary and backup
header, 128 entries of 128 bytes, 512-byte sectors. The layout is computed from the
partitions' sizes so that the same inputs give the same bytes; read_table reads a primary
table back (any entry count and size the header gives), checking both CRCs."""

from __future__ import annotations

import struct
import uuid as uuidlib
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from rdforge.errors import FormatError

SECTOR = 512
ENTRIES = 128
ENTRY_SIZE = 128
ENTRY_SECTORS = ENTRIES * ENTRY_SIZE // SECTOR  # 32
HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
ENTRY = struct.Struct("<16s16sQQQ72s")

# Partition attribute bits (UEFI and the Discoverable Partitions Specification).
ATTR_READ_ONLY = 1 << 60
ATTR_NO_AUTO = 1 << 63


@dataclass(frozen=True)
class Partition:
    type_uuid: uuidlib.UUID
    uuid: uuidlib.UUID
    name: str
    size: int  # bytes, a multiple of the sector size
    attributes: int = 0


@dataclass(frozen=True)
class Placed:
    partition: Partition
    first_lba: int
    last_lba: int

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR


def layout(parts: list[Partition], first_offset: int = 1 << 20,
           align: int = 4096) -> tuple[list[Placed], int]:
    """Where each partition goes, and the disk size (room for the backup table at the end)."""
    placed: list[Placed] = []
    pos = first_offset
    for p in parts:
        if p.size <= 0 or p.size % SECTOR:
            raise FormatError(f"partition {p.name!r}: size {p.size} is not a positive number of sectors")
        pos = -(-pos // align) * align
        placed.append(Placed(p, pos // SECTOR, (pos + p.size) // SECTOR - 1))
        pos += p.size
    end = -(-pos // align) * align
    total = end + (ENTRY_SECTORS + 1) * SECTOR
    return placed, total


def _mbr(total_sectors: int) -> bytes:
    entry = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1,
                        min(total_sectors - 1, 0xFFFFFFFF))
    return bytes(446) + entry + bytes(48) + b"\x55\xaa"


def _entries(placed: list[Placed]) -> bytes:
    if len(placed) > ENTRIES:
        raise FormatError(f"at most {ENTRIES} partitions")
    out = bytearray()
    for pl in placed:
        p = pl.partition
        name = p.name.encode("utf-16-le")
        if len(name) > 72:
            raise FormatError(f"partition name {p.name!r} longer than 36 UTF-16 units")
        out += ENTRY.pack(p.type_uuid.bytes_le, p.uuid.bytes_le, pl.first_lba, pl.last_lba,
                          p.attributes, name.ljust(72, b"\0"))
    return bytes(out.ljust(ENTRIES * ENTRY_SIZE, b"\0"))


def _header(my_lba: int, alt_lba: int, first_usable: int, last_usable: int, disk: uuidlib.UUID,
            entries_lba: int, entries_crc: int) -> bytes:
    def pack(crc: int) -> bytes:
        return HEADER.pack(b"EFI PART", 0x00010000, HEADER.size, crc, 0, my_lba, alt_lba,
                           first_usable, last_usable, disk.bytes_le, entries_lba, ENTRIES,
                           ENTRY_SIZE, entries_crc)
    crc = zlib.crc32(pack(0))
    return pack(crc).ljust(SECTOR, b"\0")


def write_table(out: BinaryIO, placed: list[Placed], total: int, disk: uuidlib.UUID) -> None:
    """Write MBR, primary and backup GPT into `out` (a file of `total` bytes; partition
    contents are written by the caller at each Placed.offset)."""
    if total % SECTOR:
        raise FormatError("disk size is not a whole number of sectors")
    sectors = total // SECTOR
    last = sectors - 1
    first_usable, last_usable = 2 + ENTRY_SECTORS, last - 1 - ENTRY_SECTORS
    for pl in placed:
        if pl.first_lba < first_usable or pl.last_lba > last_usable:
            raise FormatError(f"partition {pl.partition.name!r} lies outside the usable area")
    entries = _entries(placed)
    ecrc = zlib.crc32(entries)
    out.seek(0)
    out.write(_mbr(sectors))
    out.write(_header(1, last, first_usable, last_usable, disk, 2, ecrc))
    out.write(entries)
    out.seek((last - ENTRY_SECTORS) * SECTOR)
    out.write(entries)
    out.write(_header(last, 1, first_usable, last_usable, disk, last - ENTRY_SECTORS, ecrc))
    out.truncate(total)


@dataclass(frozen=True)
class TableEntry:
    type_uuid: uuidlib.UUID
    uuid: uuidlib.UUID
    name: str
    first_lba: int
    last_lba: int
    attributes: int

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


def read_table(data: bytes, what: str = "disk image") -> tuple[uuidlib.UUID, list[TableEntry]]:
    """The disk GUID and the used entries of a primary GPT (512-byte sectors)."""
    if len(data) < 2 * SECTOR or data[SECTOR:SECTOR + 8] != b"EFI PART":
        raise FormatError(f"{what}: no GUID partition table (no 'EFI PART' at sector 1)")
    (_sig, _rev, hsize, hcrc, _r, my_lba, _alt, _fu, _lu, disk, elba, count, esize,
     ecrc) = HEADER.unpack_from(data, SECTOR)
    if not HEADER.size <= hsize <= SECTOR or my_lba != 1:
        raise FormatError(f"{what}: GPT header size {hsize} or position {my_lba} is invalid")
    head = bytearray(data[SECTOR:SECTOR + hsize])
    head[16:20] = b"\0\0\0\0"
    if zlib.crc32(head) != hcrc:
        raise FormatError(f"{what}: GPT header checksum mismatch")
    if esize < ENTRY.size or esize % 8 or count > 1024 or elba < 2:
        raise FormatError(f"{what}: GPT entry array ({count} of {esize} bytes) is invalid")
    start = elba * SECTOR
    table = data[start:start + count * esize]
    if len(table) != count * esize:
        raise FormatError(f"{what}: GPT entry array lies past the end of the image")
    if zlib.crc32(table) != ecrc:
        raise FormatError(f"{what}: GPT entry array checksum mismatch")
    out: list[TableEntry] = []
    for i in range(count):
        t, u, first, last, attrs, name = ENTRY.unpack_from(table, i * esize)
        if t == bytes(16):
            continue
        if last < first:
            raise FormatError(f"{what}: GPT entry {i + 1} ends before it starts")
        out.append(TableEntry(uuidlib.UUID(bytes_le=t), uuidlib.UUID(bytes_le=u),
                              name.decode("utf-16-le", "replace").split("\0")[0], first, last,
                              attrs))
    return uuidlib.UUID(bytes_le=disk), out
