"""The image's bytes from a finished tree: the newc archive in archive order, compressed (or
taken from the compression cache when these exact bytes were compressed the same way before),
and the allocator settings that keep a build's peak memory low while it does so."""

from __future__ import annotations

import hashlib
import os

from rdforge.formats import compress, cpio
from rdforge.tree.model import FILE, Tree


def one_malloc_arena() -> None:
    """Have glibc serve all threads from one heap. By default each thread that allocates
    (downloads, module parsing) gets a heap of its own, which keeps what it freed: a cold
    build peaked ~60 MiB higher for it. The threads here mostly wait on I/O or work in C
    with the interpreter lock released; one heap costs them nothing measurable."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def release_freed_memory() -> None:
    """Hand memory that was freed back to the system (glibc keeps it otherwise), so the
    peak while compressing is not the index's old space plus the compressor's."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


COMPRESSED_KEEP = 8  # images kept in the compression cache


class _Digest:
    """A cpio sink that only hashes and counts what is written."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> None:
        self.h.update(data)
        self.size += len(data)


def archive(tree: Tree, mtime: int, algo: str, level: int | None) -> tuple[bytes, int]:
    """The compressed newc archive of the tree and its uncompressed size. The archive is
    streamed twice, never held whole: once to hash it, and, unless the compression cache
    has these exact bytes compressed the same way (a rebuild of an unchanged image then skips
    the slowest step), once into the compressor."""
    from rdforge.sources.cache import cache_root, drop_derived, read_derived, write_derived

    entries = cpio_entries(tree, mtime)
    digest = _Digest()
    cpio.write(digest, entries)
    digest.h.update(("|" + compress.settings_id(algo, level)).encode())
    d = cache_root() / "compressed"
    hit = d / digest.h.hexdigest()
    data = read_derived(hit)
    if data is not None:
        if compress.detect(data) == algo:
            os.utime(hit)
            return data, digest.size
        drop_derived(hit, f"it is not {algo} data")
    comp = compress.Compressor(algo, level, digest.size)
    cpio.write(comp, entries)
    data = comp.finish()
    write_derived(hit, data)
    from rdforge.fsutil import sweep_dir_temporaries

    sweep_dir_temporaries(d)
    kept = [f for f in d.iterdir() if not f.name.endswith(".sha256") and not f.name.startswith(".")]
    for f in sorted(kept, key=lambda f: f.stat().st_mtime)[:-COMPRESSED_KEEP]:
        f.unlink(missing_ok=True)
        f.with_name(f.name + ".sha256").unlink(missing_ok=True)
    return data, digest.size


def cpio_entries(tree: Tree, mtime: int) -> list[cpio.CpioEntry]:
    """The tree's entries in archive order (sorted by path components), sharing its data."""
    def key(path: str) -> list[str]:
        return path.split("/")

    entries = []
    for path in sorted(tree.entries, key=key):
        e = tree.entries[path]
        data = e.data if e.kind == FILE else e.target.encode()
        entries.append(cpio.CpioEntry(path, e.st_mode, e.uid, e.gid, mtime, data, e.rdev,
                                      e.link_id or None))
    return entries
