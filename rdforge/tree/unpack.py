"""Unpack .deb data members into the staging tree, pruning on the way."""

from __future__ import annotations

import tarfile
from pathlib import Path

from rdforge.formats.deb import DebFile
from rdforge.tree.model import CHAR, DIR, FILE, SYMLINK, Entry, Tree, check_member_name
from rdforge.tree.prune import Pruner

MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


def new_tree() -> Tree:
    """An empty tree with the merged-/usr layout every current Debian release uses."""
    t = Tree()
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
        t.mkdirs(d, "rdforge")
    for link, target in MERGED_USR.items():
        t.add_symlink(link, target)
    return t


def _canonical_prefix(tree: Tree, name: str) -> str:
    """Rewrite a member path through the merged-/usr links (bin/x -> usr/bin/x)."""
    head, _, rest = name.partition("/")
    if head in MERGED_USR and rest:
        return f"{MERGED_USR[head]}/{rest}"
    return name


Member = tuple[str, int, int, int, int, bytes, str, int, int, bytes | None]
MEMBERS_VERSION = 1


def _to_tarinfo(m: Member) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(m[0])
    ti.mode, ti.uid, ti.gid, ti.mtime, ti.type, ti.linkname = m[1], m[2], m[3], m[4], m[5], m[6]
    ti.devmajor, ti.devminor = m[7], m[8]
    ti.size = len(m[9]) if m[9] is not None else 0
    return ti


def deb_members(deb: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The data.tar members of a .deb. Packages from the content-addressed download cache
    are decoded once (xz is the slow part of a warm build) and kept beside it, compressed
    with fast zstd, keyed by the package's sha256."""
    import pickle

    import zstandard

    from rdforge.fsutil import write_atomic
    from rdforge.sources.cache import cache_root

    sha = deb.name
    if not (len(sha) == 64 and deb.parent.parent.name == "blobs"):
        with DebFile(deb) as d:
            return list(d.data())
    stored = cache_root() / "unpacked" / sha[:2] / f"{sha}.v{MEMBERS_VERSION}.pickle.zst"
    if stored.exists():
        try:
            raw = zstandard.ZstdDecompressor().decompress(stored.read_bytes())
            members: list[Member] = pickle.loads(raw)
            return [(_to_tarinfo(m), m[9]) for m in members]
        except Exception:  # a damaged cache entry: decode the package again
            stored.unlink(missing_ok=True)
    with DebFile(deb) as d:
        out = list(d.data())
    plain: list[Member] = [(ti.name, ti.mode, ti.uid, ti.gid, int(ti.mtime), ti.type, ti.linkname,
                            ti.devmajor, ti.devminor, c) for ti, c in out]
    data = pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)
    write_atomic(stored, zstandard.ZstdCompressor(level=1, threads=-1).compress(data))
    return out


def unpack_deb(tree: Tree, deb: Path, package: str, pruner: Pruner) -> tuple[int, int]:
    """Add one package's files; returns the bytes of file content it added and the newest
    member timestamp (the package's build date)."""
    added = 0
    newest = 0
    links: list[tuple[str, str, tarfile.TarInfo]] = []
    for ti, content in deb_members(deb):
        name = check_member_name(ti.name, str(deb))
        newest = max(newest, int(ti.mtime))
        if not name:
            continue
        name = _canonical_prefix(tree, name)
        pat = pruner.match(name)
        if pat is not None:
            if not ti.isdir():
                pruner.tally(pat, ti.size)
            continue
        mode = ti.mode & 0o7777
        if ti.isdir():
            tree.add(name, Entry(DIR, mode, ti.uid, ti.gid, package=package))
        elif ti.isreg():
            assert content is not None
            tree.add(name, Entry(FILE, mode, ti.uid, ti.gid, data=content, package=package))
            added += len(content)
        elif ti.issym():
            tree.add(name, Entry(SYMLINK, 0o777, ti.uid, ti.gid, target=ti.linkname,
                                 package=package))
        elif ti.islnk():
            links.append((name, check_member_name(ti.linkname, str(deb)), ti))
        elif ti.ischr():
            tree.add(name, Entry(CHAR, mode, ti.uid, ti.gid, rdev=(ti.devmajor, ti.devminor),
                                 package=package))
    for name, target, _ti in links:
        src = tree.get(_canonical_prefix(tree, target), follow=False)
        if src is None or src.kind != FILE:
            continue  # the link target was pruned: so is the link
        if not src.link_id:
            src.link_id = tree.new_link_id()
        tree.add(name, Entry(FILE, src.mode, src.uid, src.gid, data=src.data, package=package,
                             link_id=src.link_id))
    return added, newest
