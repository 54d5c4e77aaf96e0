"""The content policy: what any package (archive or local) may put into an image."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from rdforge.errors import ContentError, FormatError
from rdforge.tree.model import DIR, FILE
from rdforge.tree.prune import Pruner
from rdforge.tree.unpack import ContentPolicy, new_tree, unpack_deb


def make_deb(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A .deb whose data.tar holds exactly these members; dpkg-deb reads it back."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for ti, content in members:
            tar.addfile(ti, io.BytesIO(content) if ti.isreg() else None)
    control = io.BytesIO()
    with tarfile.open(fileobj=control, mode="w:gz") as tar:
        text = b"Package: hostile\nVersion: 1\nArchitecture: all\nMaintainer: x <x@x>\nDescription: x\n"
        ti = tarfile.TarInfo("./control")
        ti.size = len(text)
        tar.addfile(ti, io.BytesIO(text))
    out = bytearray(b"!<arch>\n")
    for name, blob in ((b"debian-binary", b"2.0\n"), (b"control.tar.gz", control.getvalue()),
                       (b"data.tar.gz", data.getvalue())):
        out += name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
        out += str(len(blob)).encode().ljust(10) + b"`\n" + blob + (b"\n" if len(blob) % 2 else b"")
    path.write_bytes(bytes(out))
    assert subprocess.run(["dpkg-deb", "--contents", str(path)], capture_output=True).returncode == 0
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0,
           uid: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.uid, ti.gid = kind, mode, size, uid, uid
    if kind == tarfile.CHRTYPE:
        ti.devmajor, ti.devminor = 1, 1
    return ti


def test_devices_setuid_and_foreign_owners_do_not_reach_the_image(tmp_path: Path) -> None:
    deb = make_deb(tmp_path / "hostile.deb", [
        (member("./dev", tarfile.DIRTYPE, 0o755), b""),
        (member("./dev/mem", tarfile.CHRTYPE, 0o666), b""),
        (member("./run/fifo", tarfile.FIFOTYPE, 0o666), b""),
        (member("./usr/bin/su-me", mode=0o6755, size=4), b"\x7fELF"),
        (member("./etc/owned", size=2, uid=1234), b"hi"),
    ])
    tree, policy = new_tree(), ContentPolicy()
    unpack_deb(tree, deb, "hostile", Pruner(()), policy)
    assert tree.get("dev/mem") is None and tree.get("run/fifo") is None
    su = tree.get("usr/bin/su-me")
    assert su is not None and su.kind == FILE and su.mode == 0o755
    owned = tree.get("etc/owned")
    assert owned is not None and (owned.uid, owned.gid) == (0, 0)
    dev = tree.get("dev")
    assert dev is not None and dev.kind == DIR
    rep = policy.report()
    assert rep["special_files_dropped"] == ["hostile: /dev/mem", "hostile: /run/fifo"]
    assert rep["setuid_setgid_cleared"] == ["hostile: /usr/bin/su-me"]
    assert rep["ownership_mapped_to_root"] == ["hostile: /etc/owned (1234:1234)"]


def test_an_owner_the_image_creates_is_kept_by_name(tmp_path: Path) -> None:
    """As dpkg does, the name in the package wins over its number: shadow is 42 in the
    package and 40 in this image; a user the image does not create stays root."""
    chk = member("./usr/sbin/chkpwd", mode=0o2755, size=2)
    chk.gid, chk.uname, chk.gname = 42, "root", "shadow"
    log = member("./var/log/x", tarfile.DIRTYPE, 0o755, uid=900)
    log.uname, log.gname = "nobody-here", "shadow"
    deb = make_deb(tmp_path / "hostile.deb", [(chk, b"hi"), (log, b"")])
    tree, policy = new_tree(), ContentPolicy()
    unpack_deb(tree, deb, "hostile", Pruner(()), policy)
    tree.add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    tree.add_file("etc/group", b"root:x:0:\nshadow:x:40:\n")
    policy.settle_owners(tree)
    kept, other = tree.get("usr/sbin/chkpwd"), tree.get("var/log/x")
    assert kept is not None and (kept.uid, kept.gid, kept.mode) == (0, 40, 0o755)
    assert other is not None and (other.uid, other.gid) == (0, 0)
    rep = policy.report()
    assert rep["ownership_kept"] == ["hostile: /usr/sbin/chkpwd (root:shadow)"]
    assert rep["ownership_mapped_to_root"] == ["hostile: /var/log/x (nobody-here:shadow)"]


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # A sparse 2 GiB member compresses to almost nothing; it must fail on its header's size.
    big = member("./usr/share/zeros", size=2 << 30)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w|gz") as tar:
        tar.addfile(big, _Zeros(2 << 30))
    deb = make_deb(tmp_path / "small.deb", [(member("./x", size=1), b"x")])
    raw = deb.read_bytes()  # keep its debian-binary and control members, new data.tar
    head = raw[:raw.index(b"data.tar.gz")]
    blob = data.getvalue()
    entry = (b"data.tar.gz".ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6)
             + b"100644".ljust(8) + str(len(blob)).encode().ljust(10) + b"`\n" + blob
             + (b"\n" if len(blob) % 2 else b""))
    deb.write_bytes(head + entry)
    assert len(deb.read_bytes()) < 10 << 20
    with pytest.raises(FormatError, match="zeros is 2048 MiB, over the limit of 256 MiB"):
        unpack_deb(new_tree(), deb, "bomb", Pruner(()), ContentPolicy())


def test_the_whole_image_is_bounded(tmp_path: Path) -> None:
    deb = make_deb(tmp_path / "two.deb", [(member("./a", size=600), b"a" * 600),
                                          (member("./b", size=600), b"b" * 600)])
    with pytest.raises(ContentError, match="pass 0 MiB unpacked at /b"):
        unpack_deb(new_tree(), deb, "two", Pruner(()), ContentPolicy(max_total=1000))


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n
