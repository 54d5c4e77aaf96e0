"""Where the bytes of a pinned package come from: a local .deb, a directory of .debs, the
download cache or the archive. Whatever the source, the file must have the pinned sha256."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock

from rdforge.errors import HashMismatch, SourceError
from rdforge.sources.archive import Package
from rdforge.sources.cache import BlobCache, sha256_file

APT_CACHE = Path("/var/cache/apt/archives")


@dataclass
class Fetcher:
    """Looks for each package, in this order: the local file it was indexed from; the
    directory of .debs (`--deb-dir`, matched by sha256, so file names do not matter); the
    download cache; apt's own download cache (by apt's file name, then checked by sha256);
    the archive it was indexed from, else each configured archive in turn (a lock names a
    package by its path in the archive, never by a mirror host). With `offline`, the archive
    is never asked."""

    offline: bool = False
    deb_dir: Path | None = None
    archives: Callable[[], list[str]] | None = None  # archive base URIs, asked when needed
    blobs: BlobCache = field(default_factory=BlobCache)
    apt_cache: Path | None = APT_CACHE
    _by_sha: dict[str, Path] | None = None
    _bases: list[str] | None = None
    _mutex: Lock = field(default_factory=Lock)

    def _dir_index(self) -> dict[str, Path]:
        with self._mutex:
            if self._by_sha is None:
                assert self.deb_dir is not None
                if not self.deb_dir.is_dir():
                    raise SourceError(f"{self.deb_dir}: no such package directory")
                self._by_sha = {sha256_file(p): p for p in sorted(self.deb_dir.glob("*.deb"))
                                if p.is_file()}
            return self._by_sha

    def _archive_bases(self) -> list[str]:
        with self._mutex:
            if self._bases is None:
                self._bases = self.archives() if self.archives else []
            return self._bases

    def one(self, p: Package) -> Path:
        if p.local:
            if sha256_file(Path(p.local)) != p.sha256:
                raise HashMismatch(f"{p.local}: sha256 differs from when it was indexed")
            return Path(p.local)
        if self.deb_dir is not None and (hit := self._dir_index().get(p.sha256)):
            return hit
        cached = self.blobs.lookup(p.sha256, p.size)
        if cached is not None:
            return cached
        if self.apt_cache is not None:
            apt = self.apt_cache / f"{p.name}_{p.version.replace(':', '%3a')}_{p.arch}.deb"
            try:
                if apt.stat().st_size == p.size and sha256_file(apt) == p.sha256:
                    return apt
            except OSError:
                pass
        where = f" nor in {self.deb_dir} (by sha256)" if self.deb_dir is not None else ""
        if self.offline:
            raise SourceError(f"{p.key}: not in the cache{where}, and --offline forbids fetching")
        if p.base:
            return self.blobs.fetch(p.url, p.sha256, p.size)
        bases = self._archive_bases()
        errors = []
        for base in bases:
            try:
                return self.blobs.fetch(f"{base}/{p.filename}", p.sha256, p.size)
            except HashMismatch:
                raise
            except SourceError as e:
                errors.append(str(e))
        why = f" ({errors[-1]})" if errors else " (no archive is configured)"
        raise SourceError(f"{p.key}: not in the cache{where}, and no archive has {p.filename}{why}")

    def all(self, pkgs: list[Package]) -> list[Path]:
        with ThreadPoolExecutor(max_workers=8) as ex:
            return list(ex.map(self.one, pkgs))


def fetch_all(pkgs: list[Package], offline: bool) -> list[Path]:
    """Packages from an index (local or archive records), no lock involved."""
    return Fetcher(offline).all(pkgs)
