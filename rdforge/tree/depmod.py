"""The depmod that indexes an image's modules: the image's own.

modules.dep.bin and the other binary indexes are written by depmod, and their bytes depend on
kmod's version (bookworm's kmod 30 and trixie's kmod 34 write different ones for the same
modules). To give the same image on any build host, rdforge runs the kmod of the image's
own packages, through the image's own dynamic loader and libraries, so the indexes are the
ones the image's modprobe was built to read. The host's depmod serves only when the image
has no kmod, or it is built for another architecture.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from rdforge.errors import KernelError
from rdforge.formats.elf import is_elf, read_elf
from rdforge.tree.fixups import LIBDIRS
from rdforge.tree.model import FILE, Tree

KMOD = "usr/bin/kmod"
_HOST_ARCH_INTERP = {"x86_64": "ld-linux-x86-64.so.2", "aarch64": "ld-linux-aarch64.so.1"}


@dataclass(frozen=True)
class Depmod:
    identity: str  # what made the indexes: part of the key of cached module sets
    files: dict[str, bytes]  # for the image's own: relative path -> content to lay out
    interp: str = ""  # relative path of the dynamic loader among files
    kmod: str = ""

    def command(self, workdir: Path) -> list[str]:
        """The depmod command line, its files laid out under workdir."""
        if not self.files:
            host = shutil.which("depmod") or shutil.which("/usr/sbin/depmod") or "/sbin/depmod"
            if not os.path.exists(host):
                raise KernelError("depmod (package kmod) is needed to index kernel modules")
            return [host]
        for rel, data in self.files.items():
            dest = workdir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            dest.chmod(0o755)
        return [str(workdir / self.interp), "--library-path", str(workdir / "lib"),
                "--argv0", "depmod", str(workdir / self.kmod)]


def _lib(tree: Tree, soname: str) -> bytes | None:
    for d in LIBDIRS:
        e = tree.get(f"{d}/{soname}")
        if e is not None and e.kind == FILE:
            return e.data
    return None


def depmod_for(tree: Tree) -> Depmod:
    """The image's own depmod when it can run here, else the host's."""
    kmod = tree.get(KMOD)
    loader = _HOST_ARCH_INTERP.get(platform.machine())
    if kmod is None or kmod.kind != FILE or not is_elf(kmod.data) or loader is None:
        return _host()
    info = read_elf(kmod.data)
    if not info.interp.endswith("/" + loader):
        return _host()  # another architecture's kmod
    interp = tree.get(info.interp.lstrip("/"))
    if interp is None or interp.kind != FILE:
        return _host()
    files = {"ld.so": interp.data, "kmod": kmod.data}
    # the libraries it links, and those it loads with dlopen() (the module decompressors)
    todo = list(info.needed)
    for note in info.dlopen:
        sonames = note.get("soname")
        if isinstance(sonames, list) and sonames:
            todo.append(str(sonames[0]))
    seen: set[str] = set()
    while todo:
        soname = todo.pop()
        if soname in seen:
            continue
        seen.add(soname)
        data = _lib(tree, soname)
        if data is None:
            continue  # an optional one the image does not carry
        files[f"lib/{soname}"] = data
        if is_elf(data):
            todo += read_elf(data).needed
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
    return Depmod("image:" + h.hexdigest(), files, "ld.so", "kmod")


def _host() -> Depmod:
    return Depmod("host", {})
