"""Content-addressed download cache (sha256 -> file) outside the project, plus HTTP helpers."""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from rdforge.errors import HashMismatch, SourceError
from rdforge.fsutil import write_atomic

CHUNK = 1 << 20


def cache_root() -> Path:
    """$RDFORGE_CACHE, else $XDG_CACHE_HOME/rdforge, else ~/.cache/rdforge; created when
    missing. Where none can be created (a package build's HOME is /nonexistent), a temporary
    directory serves this one run, which then caches nothing for the next."""
    env = os.environ.get("RDFORGE_CACHE")
    if env:
        return _usable(Path(env))
    xdg = os.environ.get("XDG_CACHE_HOME")
    return _usable((Path(xdg) if xdg else Path.home() / ".cache") / "rdforge")


@functools.cache
def _usable(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK | os.X_OK):
            return path
    except OSError:
        pass
    import atexit
    import shutil
    import sys

    tmp = Path(tempfile.mkdtemp(prefix="rdforge-cache-"))
    atexit.register(shutil.rmtree, tmp, True)
    print(f"rdforge: cache {path} cannot be created or written; using {tmp} for this run "
          "(set RDFORGE_CACHE to keep downloads)", file=sys.stderr)
    return tmp


def report_damaged(path: Path, why: str) -> None:
    """One line on stderr for a cache entry found damaged and dropped (it is rebuilt from its
    inputs; damage in local state is never blamed on the archive)."""
    import sys

    print(f"rdforge: cache {path.parent}: entry {path.name} is damaged ({why}); dropped, "
          "rebuilt from its inputs", file=sys.stderr)


def write_derived(path: Path, data: bytes) -> None:
    """Store a derived cache entry (something rdforge computed from verified inputs) with the
    sha256 of its bytes beside it, so that every later read can check it."""
    write_atomic(path, data)
    write_atomic(path.with_name(path.name + ".sha256"),
                 hashlib.sha256(data).hexdigest().encode() + b"\n")


def read_derived(path: Path) -> bytes | None:
    """A derived cache entry's bytes if they are what was stored: None when it is absent (or
    has no stored sha256: an entry of an older rdforge, or one being written), and None after
    dropping and reporting it when its bytes do not match."""
    side = path.with_name(path.name + ".sha256")
    try:
        want = side.read_text().strip()
        data = path.read_bytes()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if hashlib.sha256(data).hexdigest() != want:
        path.unlink(missing_ok=True)
        side.unlink(missing_ok=True)
        report_damaged(path, "its sha256 differs from the one stored with it")
        return None
    return data


def drop_derived(path: Path, why: str) -> None:
    """Remove an entry whose verified bytes still would not decode (stored by a bug)."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)
    report_damaged(path, why)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class BlobCache:
    """Files named by their sha256; an entry whose content does not match is dropped."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "blobs"

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def lookup(self, sha256: str, size: int | None = None, verify: bool = True) -> Path | None:
        """The cached file, or None when absent, truncated or corrupt (then it is removed)."""
        p = self.path(sha256)
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        if (size is not None and st.st_size != size) or (verify and sha256_file(p) != sha256):
            p.unlink(missing_ok=True)
            return None
        return p

    def add_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.path(sha).exists():
            write_atomic(self.path(sha), data)
        return sha

    def fetch(self, url: str, sha256: str, size: int | None,
              progress: Callable[[int], None] | None = None) -> Path:
        """Return the cached file for sha256, downloading it from url when needed."""
        hit = self.lookup(sha256, size)
        if hit:
            if progress and size:
                progress(size)
            return hit
        p = self.path(sha256)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-")
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, open_url(url) as resp:
                while chunk := resp.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
            if h.hexdigest() != sha256:
                raise HashMismatch(f"{url}: sha256 {h.hexdigest()} does not match the signed "
                                   f"index ({sha256})")
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return p


def open_url(url: str):  # type: ignore[no-untyped-def]
    """urlopen with a timeout and a one-line error naming the URL."""
    try:
        return urllib.request.urlopen(url, timeout=60)
    except urllib.error.HTTPError as e:
        raise SourceError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SourceError(f"{url}: cannot fetch ({reason})") from None


def fetch_bytes(url: str) -> bytes:
    with open_url(url) as resp:
        data: bytes = resp.read()
        return data

