"""Compressors the kernel's initramfs unpacker understands, with deterministic settings."""

from __future__ import annotations

import gzip
import io
import lzma
import struct

from rdforge.errors import ConfigError, FormatError

ALGORITHMS = ("zstd", "xz", "gzip", "lz4", "none")
# The kernel reads LZ4 only in the "legacy" framing: this magic, then blocks of up to 8 MiB
# of input, each preceded by its compressed size.
LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"
LZ4_LEGACY_BLOCK = 8 << 20


def compress_stream(raw: bytes, algo: str, level: int | None = None) -> bytes:
    if algo == "zstd":
        import zstandard

        params = zstandard.ZstdCompressionParameters.from_level(
            level if level is not None else 12, threads=-1, write_checksum=True,
            write_content_size=True)
        return zstandard.ZstdCompressor(compression_params=params).compress(raw)
    if algo == "xz":
        # The kernel's XZ decoder knows CRC32 (not CRC64) and the x86 BCJ filter.
        filters = [{"id": lzma.FILTER_X86},
                   {"id": lzma.FILTER_LZMA2, "preset": level if level is not None else 6}]
        return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)
    if algo == "gzip":
        bio = io.BytesIO()
        with gzip.GzipFile(fileobj=bio, mode="wb", compresslevel=level or 9, mtime=0,
                           filename="") as g:
            g.write(raw)
        return bio.getvalue()
    if algo == "lz4":
        import lz4.block  # type: ignore[import-untyped]

        out = bytearray(LZ4_LEGACY_MAGIC)
        for i in range(0, len(raw), LZ4_LEGACY_BLOCK):
            blk = lz4.block.compress(raw[i:i + LZ4_LEGACY_BLOCK], mode="high_compression",
                                     compression=level if level is not None else 9,
                                     store_size=False)
            out += struct.pack("<I", len(blk)) + blk
        return bytes(out)
    if algo == "none":
        return raw
    raise ConfigError(f"unknown compression {algo!r} (choose from {', '.join(ALGORITHMS)})")


def detect(head: bytes) -> str:
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == LZ4_LEGACY_MAGIC:
        return "lz4"
    if head[:5] == b"07070":
        return "none"
    return "unknown"


def decompress(data: bytes) -> bytes:
    algo = detect(data)
    if algo == "zstd":
        import zstandard

        out = io.BytesIO()
        zstandard.ZstdDecompressor().copy_stream(io.BytesIO(data), out)
        return out.getvalue()
    if algo == "xz":
        return lzma.decompress(data)
    if algo == "gzip":
        return gzip.decompress(data)
    if algo == "lz4":
        import lz4.block

        buf = bytearray()
        pos = 4
        while pos + 4 <= len(data):
            (size,) = struct.unpack_from("<I", data, pos)
            if data[pos:pos + 4] == LZ4_LEGACY_MAGIC:  # a concatenated stream
                pos += 4
                continue
            pos += 4
            buf += lz4.block.decompress(data[pos:pos + size], uncompressed_size=LZ4_LEGACY_BLOCK)
            pos += size
        return bytes(buf)
    if algo == "none":
        return data
    raise FormatError(f"unknown compression (magic {data[:6].hex()})")
