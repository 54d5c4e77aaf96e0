"""Small root file systems for boot tests: busybox from the archive, an init that prints a
marker and powers off, and os-release (systemd refuses to switch into a root without it)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rdforge.errors import BootError
from rdforge.formats.deb import DebFile
from rdforge.sources.cache import cache_root

MARKER = "RDFORGE-ROOT-REACHED"
LABEL = "rdforge-root"
FS_UUID = "5f3a4c1e-8b7d-4e2a-9c6b-0d1e2f3a4b5c"

INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
read up _ < /proc/uptime
echo "{MARKER} uptime=$up"
/bin/busybox sync
/bin/busybox poweroff -f
"""

OS_RELEASE = 'ID=rdforge-test-root\nNAME="rdforge test root"\nVERSION_ID=1\n'


def _populate(root: Path, busybox_deb: Path) -> None:
    with DebFile(busybox_deb) as deb:
        for ti, content in deb.data():
            if ti.name.lstrip("./") in ("bin/busybox", "usr/bin/busybox") and content:
                (root / "bin").mkdir(parents=True, exist_ok=True)
                (root / "bin/busybox").write_bytes(content)
                os.chmod(root / "bin/busybox", 0o755)
    if not (root / "bin/busybox").exists():
        raise BootError(f"{busybox_deb}: no busybox binary in it")
    for d in ("sbin", "proc", "sys", "dev", "etc", "usr/lib", "run", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "sbin/init").write_text(INIT)
    os.chmod(root / "sbin/init", 0o755)
    (root / "usr/lib/os-release").write_text(OS_RELEASE)
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    os.symlink("busybox", root / "bin/sh")


def make_root_image(busybox_deb: Path, fstype: str = "ext4", size_mb: int = 64,
                    dest: Path | None = None) -> Path:
    """A raw disk image with one file system (no partition table), labelled LABEL with
    FS_UUID, cached by its inputs."""
    if fstype == "xfs":
        size_mb = max(size_mb, 320)  # mkfs.xfs refuses file systems under 300 MB
    key = hashlib.sha256(f"{busybox_deb.name}|{fstype}|{size_mb}|{INIT}|{FS_UUID}".encode())
    out = dest or cache_root() / "roots" / f"{key.hexdigest()[:16]}.{fstype}.img"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rdforge-root-") as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        _populate(root, busybox_deb)
        img = Path(tmp, "root.img")
        with open(img, "wb") as f:
            f.truncate(size_mb << 20)
        if fstype == "ext4":
            cmd = ["mkfs.ext4", "-q", "-L", LABEL, "-U", FS_UUID, "-d", str(root), str(img)]
        elif fstype == "btrfs":
            cmd = ["mkfs.btrfs", "-q", "-L", LABEL, "-U", FS_UUID, "--rootdir", str(root), str(img)]
        elif fstype == "xfs":
            proto = Path(tmp, "proto")
            proto.write_text(_xfs_proto(root))
            cmd = ["mkfs.xfs", "-q", "-L", LABEL, "-m", f"uuid={FS_UUID}", "-p", str(proto), str(img)]
        else:
            raise BootError(f"unsupported test root file system {fstype!r}")
        if not shutil.which(cmd[0]):
            raise BootError(f"{cmd[0]} is not installed (needed for a {fstype} test root)")
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if r.returncode != 0:
            raise BootError(f"{cmd[0]} failed: {r.stderr.strip()}")
        fd, tmp_out = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        os.close(fd)
        shutil.move(str(img), tmp_out)
        os.replace(tmp_out, out)
    return out


def _xfs_proto(root: Path) -> str:
    """An mkfs.xfs prototype file describing root (mkfs.xfs has no --rootdir)."""
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def walk(d: Path, depth: int) -> None:
        ind = " " * depth
        for p in sorted(d.iterdir()):
            st = p.lstat()
            perm = oct(st.st_mode & 0o777)[2:].zfill(3)
            if p.is_symlink():
                lines.append(f"{ind}{p.name} l--{perm} 0 0 {os.readlink(p)}")
            elif p.is_dir():
                lines.append(f"{ind}{p.name} d--{perm} 0 0")
                walk(p, depth + 1)
                lines.append(f"{ind}$")
            else:
                lines.append(f"{ind}{p.name} ---{perm} 0 0 {p}")

    walk(root, 1)
    lines.append("$")
    return "\n".join(lines) + "\n"
