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


def unpack_deb(tree: Tree, deb: Path, package: str, pruner: Pruner) -> tuple[int, int]:
    """Add one package's files; returns the bytes of file content it added and the newest
    member timestamp (the package's build date)."""
    added = 0
    newest = 0
    links: list[tuple[str, str, tarfile.TarInfo]] = []
    with DebFile(deb) as d:
        for ti, content in d.data():
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
