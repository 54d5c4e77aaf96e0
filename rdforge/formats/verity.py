"""dm-verity hash trees with the on-disk superblock (version 1), as `veritysetup format`
writes them to a separate hash device.

Layout of the hash device: one hash block holding the 512-byte superblock, then the tree's
levels from the top (one block) down to level 0 (one hash per data block). Every hash is
H(salt || block); hashes are padded to a power of two within a hash block, and the unused rest
of a block is zero. The root hash is H(salt || top block)."""

from __future__ import annotations

import hashlib
import struct
import uuid as uuidlib
from dataclasses import dataclass
from typing import BinaryIO

from rdforge.errors import FormatError

SIGNATURE = b"verity\0\0"
SUPERBLOCK = struct.Struct("<8sII16s32sIIQH6s256s168s")
assert SUPERBLOCK.size == 512


@dataclass(frozen=True)
class VerityParams:
    salt: bytes
    uuid: uuidlib.UUID
    algorithm: str = "sha256"
    data_block_size: int = 4096
    hash_block_size: int = 4096


@dataclass(frozen=True)
class VerityResult:
    root_hash: bytes
    data_blocks: int
    hash_size: int  # bytes written to the hash device


def superblock(p: VerityParams, data_blocks: int) -> bytes:
    if len(p.salt) > 256:
        raise FormatError("verity salt longer than 256 bytes")
    return SUPERBLOCK.pack(SIGNATURE, 1, 1, p.uuid.bytes, p.algorithm.encode().ljust(32, b"\0"),
                           p.data_block_size, p.hash_block_size, data_blocks, len(p.salt),
                           b"\0" * 6, p.salt.ljust(256, b"\0"), b"\0" * 168)


def parse_superblock(raw: bytes) -> tuple[VerityParams, int]:
    if len(raw) < SUPERBLOCK.size:
        raise FormatError("not a dm-verity version 1 superblock (too short)")
    (sig, version, hash_type, uid, alg, dbs, hbs, blocks, salt_size, _p1, salt,
     _p2) = SUPERBLOCK.unpack(raw[:SUPERBLOCK.size])
    if sig != SIGNATURE or version != 1 or hash_type != 1 or salt_size > 256 \
            or not alg.rstrip(b"\0").isascii():
        raise FormatError("not a dm-verity version 1 superblock")
    return (VerityParams(salt[:salt_size], uuidlib.UUID(bytes=uid),
                         alg.rstrip(b"\0").decode(), dbs, hbs), blocks)


def _digest_size(algorithm: str) -> int:
    try:
        return hashlib.new(algorithm).digest_size
    except ValueError as e:
        raise FormatError(f"unknown verity hash algorithm {algorithm!r}") from e


def hash_tree(data: BinaryIO, size: int, p: VerityParams) -> tuple[bytes, list[bytes]]:
    """The root hash and the tree's levels, top level first, each padded to whole blocks."""
    if size % p.data_block_size:
        raise FormatError(f"verity data size {size} is not a multiple of {p.data_block_size}")
    dsize = _digest_size(p.algorithm)
    slot = 1 << (dsize - 1).bit_length()
    per_block = p.hash_block_size // slot
    base = hashlib.new(p.algorithm, p.salt)

    def digest(block: bytes) -> bytes:
        h = base.copy()
        h.update(block)
        return h.digest()

    def pack(hashes: list[bytes]) -> bytes:
        out = bytearray()
        pad = b"\0" * (slot - dsize)
        for i in range(0, len(hashes), per_block):
            blk = b"".join(x + pad for x in hashes[i:i + per_block])
            out += blk.ljust(p.hash_block_size, b"\0")
        return bytes(out)

    hashes: list[bytes] = []
    left = size
    while left:
        block = data.read(min(left, 1 << 20))
        if not block:
            raise FormatError("verity data ended early")
        left -= len(block)
        for i in range(0, len(block), p.data_block_size):
            hashes.append(digest(block[i:i + p.data_block_size]))
    if not hashes:
        raise FormatError("verity needs at least one data block")
    # Levels are added until one hash remains: that is the root hash (a single data block
    # has no tree at all, its own hash is the root).
    levels: list[bytes] = []
    while len(hashes) > 1:
        level = pack(hashes)
        levels.append(level)
        hashes = [digest(level[i:i + p.hash_block_size])
                  for i in range(0, len(level), p.hash_block_size)]
    root = hashes[0]
    return root, levels[::-1]


def format_hash_device(data: BinaryIO, size: int, p: VerityParams, out: BinaryIO) -> VerityResult:
    """Write superblock and tree for `size` bytes of `data` to `out`; like `veritysetup format`."""
    root, levels = hash_tree(data, size, p)
    sb = superblock(p, size // p.data_block_size).ljust(p.hash_block_size, b"\0")
    out.write(sb)
    for level in levels:
        out.write(level)
    return VerityResult(root, size // p.data_block_size, len(sb) + sum(map(len, levels)))
