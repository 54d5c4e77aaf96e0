"""The files inside a DDI (a system or configuration extension, or any image with a root or
/usr partition): its data partition's verity root hash is computed and compared with the
signed one first, then the file system (erofs or squashfs) is read by its own tools
(fsck.erofs --extract, unsquashfs) into a private directory and taken in as a tree, which
inspect --list/--file/--extract and diff read like an initrd's."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from rdforge.errors import FormatError
from rdforge.formats import ddi, verity
from rdforge.tree.model import DIR, FILE, SYMLINK, Entry, Tree

EROFS_MAGIC = bytes.fromhex("e2e1f5e0")  # 0xE0F5E1E2, little-endian, at byte 1024
SQUASHFS_MAGIC = b"hsqs"
MAX_DDI = 2 << 30


def read_ddi(path: Path) -> tuple[Tree, dict[str, object]]:
    """The data partition's files as a tree, and ddi.describe's table with "verity_checked"."""
    try:
        if path.stat().st_size > MAX_DDI:
            raise FormatError(f"{path}: larger than {MAX_DDI >> 20} MiB")
        data = path.read_bytes()
    except OSError as err:
        raise FormatError(f"{path}: {err.strerror}") from None
    info = ddi.describe(data, str(path))
    parts = info["partitions"]
    assert isinstance(parts, list)
    root = next((p for p in parts if str(p["role"]).startswith(("root-", "usr-"))
                 and not str(p["role"]).endswith(("-verity", "-verity-sig"))), None)
    if root is None:
        raise FormatError(f"{path}: no root or /usr data partition in it")
    body = data[int(root["offset"]):int(root["offset"]) + int(root["size"])]
    info["verity_checked"] = _check_verity(path, data, parts, body, info)
    return _read_fs(path, body), info


def _check_verity(path: Path, data: bytes, parts: list[dict[str, object]], body: bytes,
                  info: dict[str, object]) -> bool:
    """Compare the data partition's root hash with the signed one: False when there is no
    signed root hash to compare with; an error when they differ."""
    hashp = next((p for p in parts if str(p["role"]).endswith("-verity")), None)
    want = info.get("root_hash")
    if hashp is None or not isinstance(want, str):
        return False
    at = int(str(hashp["offset"]))
    params, blocks = verity.parse_superblock(data[at:at + 512])
    size = blocks * params.data_block_size
    if size > len(body):
        raise FormatError(f"{path}: the verity superblock covers {size} bytes, the data "
                          f"partition has {len(body)}")
    root, _levels = verity.hash_tree(io.BytesIO(body[:size]), size, params)
    if root.hex() != want:
        raise FormatError(f"{path}: the data partition does not match its signed root hash "
                          "(the image is damaged or was altered after signing)")
    return True


def _read_fs(path: Path, body: bytes) -> Tree:
    if body[1024:1028] == EROFS_MAGIC:
        tool, pkg = "fsck.erofs", "erofs-utils"
    elif body[:4] == SQUASHFS_MAGIC:
        tool, pkg = "unsquashfs", "squashfs-tools"
    else:
        raise FormatError(f"{path}: the data partition holds neither erofs nor squashfs")
    exe = shutil.which(tool)
    if exe is None:
        raise FormatError(f"{path}: reading its {pkg.split('-')[0]} file system needs {tool} "
                          f"(apt-get install {pkg})")
    with tempfile.TemporaryDirectory(prefix="rdforge-ddi-") as tmp:
        img, out = Path(tmp, "fs.img"), Path(tmp, "root")
        img.write_bytes(body)
        as_root = os.geteuid() == 0
        if tool == "fsck.erofs":
            cmd = [exe, f"--extract={out}", "--preserve" if as_root else "--no-preserve-owner",
                   str(img)]
        else:
            cmd = [exe, "-no-xattrs", "-quiet", "-no-progress", "-d", str(out), str(img)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            err = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no message"]
            raise FormatError(f"{path}: {tool} cannot read the data partition ({err[0]})")
        return _take_in(out, as_root)


def _take_in(root: Path, owners: bool) -> Tree:
    """A directory as a tree: types, permission bits, contents, link targets, and owners
    when the extraction could keep them (as root)."""
    tree = Tree()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = Path(dirpath, n)
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            uid, gid = (st.st_uid, st.st_gid) if owners else (0, 0)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                e = Entry(SYMLINK, 0o777, uid, gid, target=os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                e = Entry(DIR, mode, uid, gid)
            elif stat.S_ISREG(st.st_mode):
                e = Entry(FILE, mode, uid, gid, data=p.read_bytes())
            else:
                continue  # a file system of an extension holds no device nodes
            tree.entries[rel] = e
    return tree


def extension_release(tree: Tree) -> tuple[str, dict[str, str]] | None:
    """The extension-release file (sysext's or confext's) and its fields, if there is one."""
    for d in ("usr/lib/extension-release.d", "etc/extension-release.d"):
        for name in tree.listdir(d) if tree.get(d) is not None else []:
            e = tree.get(f"{d}/{name}")
            if name.startswith("extension-release.") and e is not None and e.kind == FILE:
                fields = {}
                for line in e.data.decode("utf-8", "replace").splitlines():
                    k, sep, v = line.partition("=")
                    if sep and not line.startswith("#"):
                        fields[k.strip()] = v.strip().strip('"')
                return f"/{d}/{name}", fields
    return None
