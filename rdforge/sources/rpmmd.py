"""An rpm-md repository as a package source: repomd.xml verified against its detached
signature (repomd.xml.asc) with the distribution's key, primary.xml against the checksum
repomd.xml gives, each .rpm against primary's sha256 and its header signature against the
same key. Nothing unverified is parsed beyond what finding its signature needs.

Offline builds use what an online one cached: repomd.xml and its signature under
cache_root()/rpmmd/REPO/ (checked again on every use), the rest in the content-addressed
blob cache."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
from pathlib import Path

from rdforge.errors import FormatError, SignatureError, SourceError
from rdforge.formats.rpm import Rpm
from rdforge.formats.rpmmd import (
    RepoFile,
    RpmPackage,
    parse_filelists,
    parse_primary,
    parse_repomd,
)
from rdforge.fsutil import write_atomic
from rdforge.sources.cache import BlobCache, cache_root, fetch_bytes
from rdforge.sources.openpgp import verify_detached

MAX_METADATA = 2 << 30  # decompressed primary.xml: Fedora's is ~200 MB, refuse a bomb


def decompress(data: bytes, name: str, what: str) -> bytes:
    """Metadata in the compressions createrepo_c writes, chosen by the file's extension."""
    try:
        if name.endswith(".zst"):
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(data) as r:
                out = r.read(MAX_METADATA + 1)
        elif name.endswith(".xz"):
            out = lzma.LZMADecompressor().decompress(data, MAX_METADATA + 1)
        elif name.endswith(".gz"):
            out = gzip.GzipFile(fileobj=io.BytesIO(data)).read(MAX_METADATA + 1)
        elif name.endswith(".bz2"):
            out = bz2.BZ2Decompressor().decompress(data, MAX_METADATA + 1)
        elif name.endswith(".xml"):
            out = data
        else:
            raise FormatError(f"{what}: unsupported metadata compression ({name})")
    except FormatError:
        raise
    except Exception as e:  # each library has its own error types
        raise FormatError(f"{what}: corrupt compressed metadata ({e})") from None
    if len(out) > MAX_METADATA:
        raise FormatError(f"{what}: decompresses to more than {MAX_METADATA >> 20} MiB")
    return out


class RpmMdRepo:
    """One repository: base URL (http(s):// or file://) and the key that signs it."""

    def __init__(self, base: str, keyring: Path, offline: bool = False,
                 blobs: BlobCache | None = None) -> None:
        self.base = base.rstrip("/") + "/"
        self.keyring = keyring
        self.offline = offline
        self.blobs = blobs or BlobCache()
        safe = re.sub(r"[^A-Za-z0-9.-]+", "_", self.base)
        self.stored = cache_root() / "rpmmd" / safe

    def repomd(self) -> dict[str, RepoFile]:
        what = f"{self.base}repodata/repomd.xml"
        names = ("repomd.xml", "repomd.xml.asc")
        if self.offline:
            if not all((self.stored / n).exists() for n in names):
                raise SourceError(f"{what}: not cached for an offline build")
            xml, asc = ((self.stored / n).read_bytes() for n in names)
        else:
            xml = fetch_bytes(what)
            try:
                asc = fetch_bytes(what + ".asc")
            except SourceError:
                raise SignatureError(f"{what}: the repository publishes no signature "
                                     "(repomd.xml.asc); refusing unsigned metadata") from None
        verify_detached(asc, xml, self.keyring, what)
        files = parse_repomd(xml, what)
        if "primary" not in files:
            raise FormatError(f"{what}: lists no primary metadata")
        if not self.offline:
            for n, data in zip(names, (xml, asc), strict=True):
                write_atomic(self.stored / n, data)
        return files

    def _blob(self, location: str, sha256: str, size: int | None) -> Path:
        if self.offline:
            hit = self.blobs.lookup(sha256, size)
            if hit is None:
                raise SourceError(f"{self.base}{location}: not cached for an offline build")
            return hit
        return self.blobs.fetch(self.base + location, sha256, size)

    def _metadata(self, kind: str) -> tuple[bytes, str]:
        files = self.repomd()
        if kind not in files:
            raise FormatError(f"{self.base}repodata/repomd.xml: lists no {kind} metadata")
        f = files[kind]
        what = f"{self.base}{f.location}"
        path = self._blob(f.location, f.sha256, f.size)
        return decompress(path.read_bytes(), f.location, what), what

    def packages(self) -> list[RpmPackage]:
        """Every package primary.xml lists (verified through repomd.xml's signature)."""
        return parse_primary(*self._metadata("primary"))

    def filelists(self) -> dict[str, list[str]]:
        """Every file of every package (only read when a file dependency needs it)."""
        return parse_filelists(*self._metadata("filelists"))

    def fetch(self, pkg: RpmPackage) -> Path:
        """The package file, its sha256 as primary says and its header signed by the key."""
        path = self._blob(pkg.location, pkg.sha256, pkg.size)
        verify_package(path, self.keyring)
        return path


def verify_package(path: Path, keyring: Path, what: str | None = None) -> Rpm:
    """Open an .rpm and check its header signature against keyring (the header holds the
    payload's digest, which Rpm checks): an unsigned or foreign-signed package is refused."""
    what = what or str(path)
    rpm = Rpm(path.read_bytes(), what)
    sig = rpm.signature_packet()
    if sig is None:
        raise SignatureError(f"{what}: the package is not signed")
    verify_detached(sig, rpm.header.blob, keyring, what)
    return rpm
