"""The staging tree: an in-memory file system image keyed by path (no leading slash).

Paths are resolved through the tree's own symlinks with the tree as root, so nothing written
into it can escape it, and merged-/usr symlinks (bin -> usr/bin) route package files home.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rdforge.errors import FormatError

DIR, FILE, SYMLINK, CHAR = "dir", "file", "symlink", "char"


@dataclass
class Entry:
    kind: str
    mode: int  # permission bits (07777)
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""  # symlink target
    rdev: tuple[int, int] = (0, 0)
    package: str = ""  # the package (or fix-up) that put it there
    link_id: int = 0  # entries sharing a non-zero link_id are hard links of one file

    @property
    def st_mode(self) -> int:
        kind = {DIR: stat.S_IFDIR, FILE: stat.S_IFREG, SYMLINK: stat.S_IFLNK,
                CHAR: stat.S_IFCHR}[self.kind]
        return kind | (self.mode & 0o7777)

    @property
    def size(self) -> int:
        return len(self.data) if self.kind == FILE else len(self.target.encode())


def check_member_name(name: str, what: str) -> str:
    """Normalise a member name ('./usr/bin/x' -> 'usr/bin/x'); refuse escaping names."""
    if name.startswith("/"):
        raise FormatError(f"{what}: absolute member path {name!r} refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise FormatError(f"{what}: member path {name!r} escapes the tree")
    return "/".join(parts)


class Tree:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self._next_link = 1
        # who adds entries that name no package: a fix-up, so that `rdforge explain` can say
        self.maker = "rdforge"

    @contextmanager
    def made_by(self, maker: str) -> Iterator[None]:
        """Entries added in the block that name no package are marked as maker's."""
        outer, self.maker = self.maker, maker
        try:
            yield
        finally:
            self.maker = outer

    def __contains__(self, path: str) -> bool:
        return self.resolve(path, follow=False) in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def new_link_id(self) -> int:
        self._next_link += 1
        return self._next_link

    def resolve(self, path: str, follow: bool = True) -> str:
        """The canonical in-tree path: every symlinked directory on the way is followed, the
        last component only when follow is true. '..' never climbs above the root."""
        todo = [p for p in path.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            cur = "/".join(done + [part])
            e = self.entries.get(cur)
            if e is not None and e.kind == SYMLINK and (todo or follow):
                hops += 1
                if hops > 40:
                    raise FormatError(f"symlink loop at /{cur}")
                tparts = [p for p in e.target.split("/") if p not in ("", ".")]
                if e.target.startswith("/"):
                    done = []
                todo = tparts + todo
                continue
            done.append(part)
        return "/".join(done)

    def get(self, path: str, follow: bool = True) -> Entry | None:
        return self.entries.get(self.resolve(path, follow))

    def mkdirs(self, path: str, package: str = "") -> str:
        package = package or self.maker
        real = self.resolve(path)
        if not real:
            return real
        parts = real.split("/")
        for i in range(1, len(parts) + 1):
            cur = "/".join(parts[:i])
            e = self.entries.get(cur)
            if e is None:
                self.entries[cur] = Entry(DIR, 0o755, package=package)
            elif e.kind == SYMLINK:  # a symlink created after resolve: follow it again
                return self.mkdirs(self.resolve(cur) + "/" + "/".join(parts[i:]), package)
            elif e.kind != DIR:
                raise FormatError(f"/{cur} is a {e.kind}, not a directory")
        return real

    def add(self, path: str, entry: Entry) -> str:
        """Place entry at path (parents resolved and created); returns the canonical path."""
        if not entry.package:
            entry.package = self.maker
        parent, _, name = path.rstrip("/").rpartition("/")
        real_parent = self.mkdirs(parent, entry.package) if parent else ""
        real = f"{real_parent}/{name}" if real_parent else name
        old = self.entries.get(real)
        if old is not None and old.kind == DIR and entry.kind == DIR:
            return real  # directories merge; the first owner's metadata stays
        if old is not None and old.kind == DIR and entry.kind == SYMLINK:
            # a package ships a symlink where the tree has a directory (merged /usr): keep the dir
            target = self.resolve(posixpath.join(real_parent, entry.target))
            if target == real:
                return real
        self.entries[real] = entry
        return real

    def add_file(self, path: str, data: bytes, mode: int = 0o644, package: str = "") -> str:
        return self.add(path, Entry(FILE, mode, data=data, package=package))

    def add_symlink(self, path: str, target: str, package: str = "") -> str:
        return self.add(path, Entry(SYMLINK, 0o777, target=target, package=package))

    def remove(self, path: str) -> None:
        """Remove path (not following a final symlink) and everything below it."""
        real = self.resolve(path, follow=False)
        self.entries.pop(real, None)
        prefix = real + "/"
        for p in [p for p in self.entries if p.startswith(prefix)]:
            del self.entries[p]

    def files(self) -> Iterator[tuple[str, Entry]]:
        for p, e in self.entries.items():
            if e.kind == FILE:
                yield p, e

    def listdir(self, path: str) -> list[str]:
        real = self.resolve(path)
        prefix = real + "/" if real else ""
        return sorted(p[len(prefix):] for p in self.entries
                      if p.startswith(prefix) and "/" not in p[len(prefix):] and p != real)
