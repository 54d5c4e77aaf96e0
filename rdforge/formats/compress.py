"""Compressors the kernel's initramfs unpacker understands, with deterministic settings."""

from __future__ import annotations

import gzip
import io
import lzma

from rdforge.errors import ConfigError, FormatError

ALGORITHMS = ("zstd", "xz", "gzip", "none")


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
    if algo == "none":
        return data
    raise FormatError(f"unknown compression (magic {data[:6].hex()})")
