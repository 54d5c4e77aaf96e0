"""Compressors the kernel's initramfs unpacker understands, with deterministic settings."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any

from rdforge.errors import ConfigError, FormatError

ALGORITHMS = ("zstd", "xz", "gzip", "lz4", "none")
# The kernel reads LZ4 only in the "legacy" framing: this magic, then blocks of up to 8 MiB
# of input, each preceded by its compressed size.
LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"
LZ4_LEGACY_BLOCK = 8 << 20
ZSTD_LEVEL = 18


def zstd_threads() -> int:
    """Compression threads for zstd: the machine's cores, at most 8 (the output does not
    depend on the number)."""
    return max(1, min(os.cpu_count() or 1, 8))


class Compressor:
    """Compresses what is written to it, piece by piece, so that an archive never has to be
    held uncompressed in memory. `size`, the total to be written, goes into the zstd frame
    header as its content size. finish() returns the compressed bytes."""

    def __init__(self, algo: str, level: int | None = None, size: int = -1) -> None:
        if algo not in ALGORITHMS:
            raise ConfigError(f"unknown compression {algo!r} (choose from {', '.join(ALGORITHMS)})")
        self.algo = algo
        self.level = level
        self._out = io.BytesIO()
        self._pending = bytearray()  # lz4: input of the block being filled
        self._obj: object = None
        if algo == "zstd":
            import zstandard

            # Level 18 with long-distance matching and a 16 MiB window (the kernel's unzstd
            # allocates the window while it unpacks; it takes up to 128 MiB). zstd's
            # multi-threaded mode splits the input into jobs whose size follows from the
            # parameters, never from the number of threads: every thread count gives the
            # same bytes (a test compares 1 and 2), and a machine with more cores is faster.
            # Level 18 takes the generic image with lvm2 and mdadm from 20.5 MB (level 12)
            # to 19.1 MB; the compressor needs ~200 MiB.
            params = zstandard.ZstdCompressionParameters.from_level(
                level if level is not None else ZSTD_LEVEL, source_size=max(size, 0),
                threads=zstd_threads(), window_log=24, enable_ldm=True, write_checksum=True,
                write_content_size=size >= 0)
            self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj(
                size=size)
        elif algo == "xz":
            # The kernel's XZ decoder knows CRC32 (not CRC64) and the x86 BCJ filter.
            filters = [{"id": lzma.FILTER_X86},
                       {"id": lzma.FILTER_LZMA2, "preset": level if level is not None else 6}]
            self._obj = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                                            filters=filters)
        elif algo == "gzip":
            self._obj = gzip.GzipFile(fileobj=self._out, mode="wb", compresslevel=level or 9,
                                      mtime=0, filename="")
        elif algo == "lz4":
            self._out.write(LZ4_LEGACY_MAGIC)

    def write(self, data: bytes | memoryview) -> None:
        if self.algo in ("zstd", "xz"):
            self._out.write(self._obj.compress(data))  # type: ignore[attr-defined]
        elif self.algo == "gzip":
            self._obj.write(data)  # type: ignore[attr-defined]
        elif self.algo == "lz4":
            self._pending += data
            while len(self._pending) >= LZ4_LEGACY_BLOCK:
                self._lz4_block(bytes(self._pending[:LZ4_LEGACY_BLOCK]))
                del self._pending[:LZ4_LEGACY_BLOCK]
        else:
            self._out.write(data)

    def _lz4_block(self, raw: bytes) -> None:
        import lz4.block  # type: ignore[import-untyped]

        blk = lz4.block.compress(raw, mode="high_compression",
                                 compression=self.level if self.level is not None else 9,
                                 store_size=False)
        self._out.write(struct.pack("<I", len(blk)) + blk)

    def finish(self) -> bytes:
        if self.algo in ("zstd", "xz"):
            self._out.write(self._obj.flush())  # type: ignore[attr-defined]
        elif self.algo == "gzip":
            self._obj.close()  # type: ignore[attr-defined]
        elif self.algo == "lz4" and self._pending:
            self._lz4_block(bytes(self._pending))
            self._pending.clear()
        return self._out.getvalue()


def settings_id(algo: str, level: int | None) -> str:
    """Names everything that decides the compressed bytes besides the input: the algorithm,
    its settings here and the library's version. A cache of compressed output is keyed by it,
    so that no stale result outlives a change of either."""
    if algo == "zstd":
        import zstandard

        lib = f"zstandard-{zstandard.__version__}-{zstandard.ZSTD_VERSION}"
    elif algo == "lz4":
        import lz4

        lib = f"lz4-{lz4.__version__}"
    elif algo == "gzip":
        import zlib

        lib = f"zlib-{zlib.ZLIB_RUNTIME_VERSION}"
    else:  # xz: the liblzma Python was built with; none: nothing
        import platform

        lib = f"python-{platform.python_version()}"
    return f"{algo}|{level}|{lib}|{SETTINGS_VERSION}"


# Bump when the settings Compressor uses change.
SETTINGS_VERSION = "mt-ldm-window24-crc32"


def compress_stream(raw: bytes, algo: str, level: int | None = None) -> bytes:
    c = Compressor(algo, level, len(raw))
    c.write(raw)
    return c.finish()


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


# Output past this is refused: more than any initrd the kernel would unpack (max_unpacked_size
# defaults to 1 GiB), and a small input claiming more is a decompression bomb.
DECOMPRESS_LIMIT = 1 << 30
CHUNK = 1 << 20


def decompress(data: bytes, limit: int = DECOMPRESS_LIMIT) -> bytes:
    """Decompress a whole stream (concatenated frames, streams or members included), refusing
    damaged data and output beyond limit with a FormatError that says which."""
    algo = detect(data)
    if algo == "none":
        return data
    if algo not in ALGORITHMS:
        raise FormatError(f"unknown compression (magic {data[:6].hex()})")
    out = bytearray()

    def take(piece: bytes) -> None:
        out.extend(piece)
        if len(out) > limit:
            raise FormatError(f"{algo} data decompresses to more than {limit >> 20} MiB: refused "
                              "(a damaged image, or a decompression bomb)")

    try:
        if algo == "zstd":
            import zstandard

            reader = zstandard.ZstdDecompressor(max_window_size=1 << 27).stream_reader(
                io.BytesIO(data), read_across_frames=True)
            while piece := reader.read(CHUNK):
                take(piece)
        elif algo in ("xz", "gzip"):
            rest = data
            while rest:  # concatenated xz streams or gzip members
                dec: Any = (lzma.LZMADecompressor() if algo == "xz"
                            else zlib.decompressobj(wbits=31))
                buf = rest
                while True:
                    piece = dec.decompress(buf, CHUNK)
                    take(piece)
                    if dec.eof:
                        break
                    if algo == "xz":
                        stuck, buf = dec.needs_input, b""
                    else:
                        buf = dec.unconsumed_tail
                        stuck = not buf and not piece
                    if stuck:
                        raise FormatError(f"{algo} data ends before its stream does")
                rest = dec.unused_data
                if algo == "xz":
                    rest = rest.lstrip(b"\0")  # stream padding
        else:
            _lz4_decompress(data, take)
    except FormatError:
        raise
    except (EOFError, ValueError, RuntimeError, lzma.LZMAError, zlib.error, struct.error) as e:
        raise FormatError(f"damaged {algo} data ({e})") from None
    except Exception as e:  # the compression libraries' own error types
        import lz4.block
        import zstandard

        if isinstance(e, (zstandard.ZstdError, lz4.block.LZ4BlockError)):
            raise FormatError(f"damaged {algo} data ({e})") from None
        raise
    return bytes(out)


def _lz4_decompress(data: bytes, take: Callable[[bytes], None]) -> None:
    import lz4.block

    pos = 4
    while pos + 4 <= len(data):
        if data[pos:pos + 4] == LZ4_LEGACY_MAGIC:  # a concatenated stream
            pos += 4
            continue
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if size > len(data) - pos:
            raise FormatError("damaged lz4 data (a block runs past the end)")
        take(lz4.block.decompress(data[pos:pos + size], uncompressed_size=LZ4_LEGACY_BLOCK))
        pos += size
