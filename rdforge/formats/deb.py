"""Reading .deb files: the ar container, control.tar and data.tar (xz, zstd, gzip or plain)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from rdforge.errors import FormatError

AR_MAGIC = b"!<arch>\n"


@dataclass(frozen=True)
class ArMember:
    name: str
    offset: int
    size: int


def ar_members(f: BinaryIO, what: str) -> list[ArMember]:
    """The members of a System V ar archive (as dpkg writes it)."""
    f.seek(0)
    if f.read(8) != AR_MAGIC:
        raise FormatError(f"{what}: not a Debian package (no ar header)")
    out: list[ArMember] = []
    pos = 8
    while True:
        f.seek(pos)
        hdr = f.read(60)
        if len(hdr) < 60:
            break
        if hdr[58:60] != b"`\n":
            raise FormatError(f"{what}: corrupt ar member header at offset {pos}")
        name = hdr[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(hdr[48:58].decode().strip())
        except ValueError:
            raise FormatError(f"{what}: corrupt ar member size at offset {pos}") from None
        out.append(ArMember(name, pos + 60, size))
        pos += 60 + size + (size & 1)
    return out


def _corrupt_errors() -> tuple[type[BaseException], ...]:
    import lzma
    import zlib

    import zstandard

    return (tarfile.TarError, EOFError, OSError, ValueError, lzma.LZMAError, zlib.error,
            zstandard.ZstdError)


# What a damaged archive member raises while it is read (gzip's BadGzipFile is an OSError).
CORRUPT = _corrupt_errors()


def _decompressor(name: str, raw: BinaryIO) -> IO[bytes]:
    if name.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw)
    if name.endswith(".xz"):
        import lzma

        return lzma.open(raw)
    if name.endswith(".gz"):
        import gzip

        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if name.endswith(".tar"):
        return raw
    raise FormatError(f"unsupported compression of {name}")


class _Slice(io.RawIOBase):
    """A read-only window onto part of a file."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self.f, self.pos, self.end = f, offset, offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self.end - self.pos)
        if n <= 0:
            return 0
        self.f.seek(self.pos)
        data = self.f.read(n)
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


class DebFile:
    """An opened .deb; iterate its control fields or its data members."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f: BinaryIO = open(path, "rb")
        self.members = {m.name: m for m in ar_members(self.f, str(path))}
        if "debian-binary" not in self.members:
            raise FormatError(f"{path}: not a Debian package (no debian-binary member)")

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> DebFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tar(self, prefix: str) -> tarfile.TarFile:
        for name, m in self.members.items():
            if name.startswith(prefix):
                raw: BinaryIO = io.BufferedReader(_Slice(self.f, m.offset, m.size), 1 << 20)  # type: ignore[type-var]
                return tarfile.open(fileobj=_decompressor(name, raw), mode="r|")
        raise FormatError(f"{self.path}: no {prefix}* member")

    def control(self) -> dict[str, str]:
        from rdforge.formats.deb822 import parse_stanzas

        try:
            with self._tar("control.tar") as tar:
                for ti in tar:
                    if ti.name.lstrip("./") == "control" and ti.isfile():
                        fobj = tar.extractfile(ti)
                        assert fobj is not None
                        return next(parse_stanzas(fobj.read().decode("utf-8", "replace")), {})
        except CORRUPT as e:
            raise FormatError(f"{self.path}: corrupt control.tar ({e})") from None
        raise FormatError(f"{self.path}: control.tar has no control file")

    def data(self, max_file: int | None = None) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
        """(member, content) for every entry of data.tar; content only for regular files.
        A file larger than max_file is refused before it is read."""
        try:
            with self._tar("data.tar") as tar:
                for ti in tar:
                    content = None
                    if ti.isreg() and max_file is not None and ti.size > max_file:
                        raise FormatError(f"{self.path}: /{ti.name.lstrip('./')} is "
                                          f"{ti.size >> 20} MiB, over the limit of "
                                          f"{max_file >> 20} MiB for one file (max_file_size)")
                    if ti.isreg():
                        fobj = tar.extractfile(ti)
                        assert fobj is not None
                        content = fobj.read()
                    yield ti, content
        except CORRUPT as e:
            raise FormatError(f"{self.path}: corrupt data.tar ({e})") from None
