"""Unpack .deb data members into the staging tree, pruning on the way."""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from rdforge.errors import ContentError
from rdforge.formats.deb import DebFile
from rdforge.formats.rpm import Rpm
from rdforge.tree.model import DIR, FILE, SYMLINK, Entry, Tree, check_member_name
from rdforge.tree.prune import Pruner

MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


def new_tree() -> Tree:
    """An empty tree with the merged-/usr layout every current Debian release uses."""
    t = Tree()
    with t.made_by("rdforge: the merged-/usr layout"):
        for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
            t.mkdirs(d)
        for link, target in MERGED_USR.items():
            t.add_symlink(link, target)
    return t


def _canonical_prefix(tree: Tree, name: str) -> str:
    """Rewrite a member path through the merged-/usr links (bin/x -> usr/bin/x)."""
    head, _, rest = name.partition("/")
    if head in MERGED_USR and rest:
        return f"{MERGED_USR[head]}/{rest}"
    return name


# name, mode, uid, gid, mtime, type, link target, device numbers, content, owner names
Member = tuple[str, int, int, int, int, bytes, str, int, int, bytes | None, str, str]
MEMBERS_VERSION = 2


def _to_tarinfo(m: Member) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(m[0])
    ti.mode, ti.uid, ti.gid, ti.mtime, ti.type, ti.linkname = m[1], m[2], m[3], m[4], m[5], m[6]
    ti.devmajor, ti.devminor = m[7], m[8]
    ti.uname, ti.gname = m[10], m[11]
    ti.size = len(m[9]) if m[9] is not None else 0
    return ti


def deb_members(deb: Path, max_file: int) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The data.tar members of a .deb. Packages from the content-addressed download cache
    are decoded once (xz is the slow part of a warm build) and kept beside it, compressed
    with fast zstd, keyed by the package's sha256."""
    import pickle

    import zstandard

    from rdforge.sources.cache import cache_root, drop_derived, read_derived, write_derived

    sha = deb.name
    if not (len(sha) == 64 and deb.parent.parent.name == "blobs"):
        with DebFile(deb) as d:
            return list(d.data(max_file))
    stored = cache_root() / "unpacked" / sha[:2] / f"{sha}.v{MEMBERS_VERSION}.pickle.zst"
    blob = read_derived(stored)
    if blob is not None:
        try:
            members: list[Member] = pickle.loads(zstandard.ZstdDecompressor().decompress(blob))
            return [(_to_tarinfo(m), m[9]) for m in members]
        except Exception:  # verified bytes that do not decode: decode the package again
            drop_derived(stored, "it does not decode")
    with DebFile(deb) as d:
        out = list(d.data(max_file))
    plain: list[Member] = [(ti.name, ti.mode, ti.uid, ti.gid, int(ti.mtime), ti.type, ti.linkname,
                            ti.devmajor, ti.devminor, c, ti.uname, ti.gname) for ti, c in out]
    data = pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)
    write_derived(stored, zstandard.ZstdCompressor(level=1, threads=-1).compress(data))
    return out


def rpm_members(rpm: Path | Rpm, max_file: int) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """An .rpm's files as the members unpack_members takes: modes, owners, link targets and
    times from the header, content from the payload, each file checked against the header's
    digest (formats.rpm). %ghost files are not in the package. rpm names owners (the content
    policy goes by the names; the numbers are placeholders)."""
    import stat

    from rdforge.formats.rpm import FILEMTIMES

    r = rpm if isinstance(rpm, Rpm) else Rpm.open(rpm)
    mtimes = r.header.numbers(FILEMTIMES)
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for i, f in enumerate(r.files(max_file)):
        if f.ghost:
            continue
        ti = tarfile.TarInfo("./" + f.path)
        ti.mode = stat.S_IMODE(f.mode)
        ti.uid = 0 if f.user == "root" else 65534  # rpm names owners: member_owner
        ti.gid = 0 if f.group == "root" else 65534
        ti.uname, ti.gname = f.user, f.group
        ti.mtime = mtimes[i] if i < len(mtimes) else 0
        if stat.S_ISDIR(f.mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(f.mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, f.link
        elif stat.S_ISREG(f.mode):
            ti.type, ti.size = tarfile.REGTYPE, len(f.data or b"")
        elif stat.S_ISCHR(f.mode) or stat.S_ISBLK(f.mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(f.mode) else tarfile.BLKTYPE
        else:
            ti.type = tarfile.FIFOTYPE
        out.append((ti, f.data if ti.type == tarfile.REGTYPE else None))
    return out


def package_members(package: Path | Rpm, max_file: int) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The members of a package file: an opened (and checked) .rpm, or a .deb."""
    if isinstance(package, Rpm):
        return rpm_members(package, max_file)
    return deb_members(package, max_file)


MiB = 1 << 20


@dataclass
class ContentPolicy:
    """What a package may put into an image, for archive and local packages alike. Device
    nodes, FIFOs and sockets are dropped (the image makes the nodes it needs itself);
    set-user-ID and set-group-ID bits are cleared (nothing in an initrd runs unprivileged);
    files are owned by root unless the package names an account the image creates (as dpkg
    and rpm do, by name: settle_owners); one file may not exceed max_file bytes, all of them
    together not max_total (the kernel unpacks the whole image into RAM). What was changed
    is kept here for the manifest."""

    max_file: int = 256 * MiB
    max_total: int = 1024 * MiB
    total: int = 0
    dropped_special: list[str] = field(default_factory=list)
    setid_cleared: list[str] = field(default_factory=list)
    # (package, path, user, group) of every member a package gives to another owner than root
    owners: list[tuple[str, str, str, str]] = field(default_factory=list)
    owner_kept: list[str] = field(default_factory=list)

    def member(self, package: str, name: str, ti: tarfile.TarInfo) -> int | None:
        """The mode to give a member, or None to drop it; raises for one past the bounds."""
        if ti.ischr() or ti.isblk() or ti.isfifo() or ti.type not in (
                tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                tarfile.LNKTYPE):
            self.dropped_special.append(f"{package}: /{name}")
            return None
        if ti.isreg():
            if ti.size > self.max_file:
                raise ContentError(f"{package}: /{name} is {ti.size / MiB:.0f} MiB, over the "
                                   f"limit of {self.max_file / MiB:.0f} MiB for one file "
                                   "(max_file_size)")
            self.total += ti.size
            if self.total > self.max_total:
                raise ContentError(f"{package}: the image's files pass {self.max_total / MiB:.0f}"
                                   f" MiB unpacked at /{name} (max_unpacked_size)")
        mode = ti.mode & 0o7777
        if mode & 0o6000 and not ti.isdir():
            self.setid_cleared.append(f"{package}: /{name}")
            mode &= ~0o6000
        owner = member_owner(ti)
        if owner != ("root", "root") and not ti.issym():
            self.owners.append((package, name, *owner))
        return mode

    def settle_owners(self, tree: Tree) -> None:
        """Give each member a package owns by another account the IDs the image's own
        etc/passwd and etc/group give that name; a name the image does not create (or a bare
        number, which means nothing on another system) stays root. Call once the image's
        accounts are written."""
        users, groups = _ids(tree, "etc/passwd"), _ids(tree, "etc/group")
        for package, name, user, group in self.owners:
            e = tree.get(name, follow=False)
            if e is None or user not in users or group not in groups:
                continue
            e.uid, e.gid = users[user], groups[group]
            self.owner_kept.append(f"{package}: /{name} ({user}:{group})")

    def report(self) -> dict[str, object]:
        kept = set(self.owner_kept)
        return {"max_file_size": self.max_file, "max_unpacked_size": self.max_total,
                "special_files_dropped": self.dropped_special,
                "setuid_setgid_cleared": self.setid_cleared,
                "ownership_kept": self.owner_kept,
                "ownership_mapped_to_root": [
                    s for p, n, u, g in self.owners
                    if (s := f"{p}: /{n} ({u}:{g})") not in kept]}


def member_owner(ti: tarfile.TarInfo) -> tuple[str, str]:
    """A member's owner as names, the way dpkg and rpm resolve it: a name where the package
    gives one; else root for ID 0, else the bare number ("1234")."""
    return (ti.uname or ("root" if ti.uid == 0 else str(ti.uid)),
            ti.gname or ("root" if ti.gid == 0 else str(ti.gid)))


def _ids(tree: Tree, path: str) -> dict[str, int]:
    """name -> ID from a passwd or group file in the tree."""
    e = tree.get(path)
    out = {"root": 0}
    if e is None or e.kind != FILE:
        return out
    for line in e.data.decode(errors="replace").splitlines():
        f = line.split(":")
        if len(f) > 2 and f[2].isdigit() and f[0] and not f[0].isdigit():
            out.setdefault(f[0], int(f[2]))
    return out


def unpack_deb(tree: Tree, deb: Path, package: str, pruner: Pruner,
               policy: ContentPolicy | None = None) -> tuple[int, int]:
    """Add one package's files under the content policy; returns the bytes of file content
    it added and the newest member timestamp (the package's build date)."""
    policy = policy or ContentPolicy()
    return unpack_members(tree, deb_members(deb, policy.max_file), package, str(deb), pruner,
                          policy)


# One kept member, as a lock records it: [path, "d", mode] | [path, "f", mode, sha256] |
# [path, "l", target] (symlink) | [path, "h", target] (hard link); a directory, file or hard
# link a package gives to another owner than root ends in "user:group" (member_owner).
Record = list[str | int]


def unpack_members(tree: Tree, members: list[tuple[tarfile.TarInfo, bytes | None]],
                   package: str, where: str, pruner: Pruner,
                   policy: ContentPolicy, record: list[Record] | None = None) -> tuple[int, int]:
    """unpack_deb for members from any source (a .deb's data.tar, files installed by dpkg as
    a lock recorded them); record collects what was kept, as the lock writes it."""
    added = 0
    newest = 0
    links: list[tuple[str, str, tarfile.TarInfo]] = []
    for ti, content in members:
        name = check_member_name(ti.name, where)
        newest = max(newest, int(ti.mtime))
        if not name:
            continue
        name = _canonical_prefix(tree, name)
        pat = pruner.match(name)
        if pat is not None:
            if not ti.isdir():
                pruner.tally(pat, ti.size, name, package)
            continue
        mode = policy.member(package, name, ti)
        if mode is None:
            continue
        owner = member_owner(ti)
        tail: list[str | int] = [] if owner == ("root", "root") else [":".join(owner)]
        if ti.isdir():
            tree.add(name, Entry(DIR, mode, package=package))
            if record is not None:
                record.append([ti.name, "d", mode, *tail])
        elif ti.isreg():
            assert content is not None
            tree.add(name, Entry(FILE, mode, data=content, package=package))
            added += len(content)
            if record is not None:
                record.append([ti.name, "f", mode, hashlib.sha256(content).hexdigest(), *tail])
        elif ti.issym():
            tree.add(name, Entry(SYMLINK, 0o777, target=ti.linkname, package=package))
            if record is not None:
                record.append([ti.name, "l", ti.linkname])
        elif ti.islnk():
            links.append((name, check_member_name(ti.linkname, where), ti))
            if record is not None:
                record.append([ti.name, "h", ti.linkname, *tail])
    for name, target, _ti in links:
        src = tree.get(_canonical_prefix(tree, target), follow=False)
        if src is None or src.kind != FILE:
            continue  # the link target was pruned: so is the link
        if not src.link_id:
            src.link_id = tree.new_link_id()
        tree.add(name, Entry(FILE, src.mode, src.uid, src.gid, data=src.data, package=package,
                             link_id=src.link_id))
    return added, newest
