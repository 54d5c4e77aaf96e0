"""Small root file systems for boot tests: busybox from the archive, an init that prints a
marker and powers off, and os-release (systemd refuses to switch into a root without it)."""

from __future__ import annotations

import hashlib
import json
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


USR_UUID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
SWAP_UUID = "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7"
HIBERNATING = "RDFORGE-HIBERNATING"
RESUMED = "RDFORGE-RESUMED"

# A root with /usr on its own file system: the init names what is mounted on /usr.
SPLIT_USR_INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
while read -r dev mnt fs _; do [ "$mnt" = /usr ] && echo "RDFORGE-USR dev=$dev fs=$fs"; done < /proc/mounts
read up _ < /proc/uptime
echo "{MARKER} uptime=$up"
/bin/busybox sync
/bin/busybox poweroff -f
"""

# A root that hibernates to the swap device on the second disk (the kernel writes the image
# and powers off); resumed, the same process goes on after the write to /sys/power/state.
HIBERNATE_INIT = f"""#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc 2>/dev/null
read up _ < /proc/uptime
# The swap the initrd's resume check named (resume= set /sys/power/resume): a partition, an
# LV, a dm-crypt device; udev in the initrd made its /dev/block link.
read majmin < /sys/power/resume
$bb swapon /dev/block/$majmin || echo "swapon /dev/block/$majmin failed"
echo "{HIBERNATING} uptime=$up"
echo shutdown > /sys/power/disk
echo disk > /sys/power/state
read up _ < /proc/uptime
echo "{RESUMED} uptime=$up"
echo "{MARKER} uptime=$up"
$bb poweroff -f
"""


def _populate(root: Path, busybox_deb: Path, init: str = INIT) -> None:
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
    (root / "sbin/init").write_text(init)
    os.chmod(root / "sbin/init", 0o755)
    (root / "usr/lib/os-release").write_text(OS_RELEASE)
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    os.symlink("busybox", root / "bin/sh")


def _mkfs(cmd: list[str], cwd: str, fstype: str) -> None:
    if not shutil.which(cmd[0]):
        raise BootError(f"{cmd[0]} is not installed (needed for a {fstype} test root)")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        raise BootError(f"{cmd[0]} failed: {r.stderr.strip()}")


def _mkfs_ext4(content: Path, img: Path, label: str, uuid: str) -> None:
    """An ext4 file system holding `content`, in the (already sized) file img."""
    _mkfs(["mkfs.ext4", "-q", "-L", label, "-U", uuid, "-d", str(content), str(img)],
          str(img.parent), "ext4")


def make_root_image(busybox_deb: Path, fstype: str = "ext4", size_mb: int = 64,
                    dest: Path | None = None, init: str = INIT) -> Path:
    """A raw disk image with one file system (no partition table), labelled LABEL with
    FS_UUID, cached by its inputs."""
    if fstype == "xfs":
        size_mb = max(size_mb, 320)  # mkfs.xfs refuses file systems under 300 MB
    key = hashlib.sha256(f"{busybox_deb.name}|{fstype}|{size_mb}|{init}|{FS_UUID}".encode())
    out = dest or cache_root() / "roots" / f"{key.hexdigest()[:16]}.{fstype}.img"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rdforge-root-") as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        _populate(root, busybox_deb, init)
        img = Path(tmp, "root.img")
        with open(img, "wb") as f:
            f.truncate(size_mb << 20)
        if fstype == "ext4":
            _mkfs_ext4(root, img, LABEL, FS_UUID)
        elif fstype == "btrfs":
            _mkfs(["mkfs.btrfs", "-q", "-L", LABEL, "-U", FS_UUID, "--rootdir", str(root), str(img)],
                  tmp, fstype)
        elif fstype == "xfs":
            proto = Path(tmp, "proto")
            proto.write_text(_xfs_proto(root))
            _mkfs(["mkfs.xfs", "-q", "-L", LABEL, "-m", f"uuid={FS_UUID}", "-p", str(proto), str(img)],
                  tmp, fstype)
        else:
            raise BootError(f"unsupported test root file system {fstype!r}")
        fd, tmp_out = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        os.close(fd)
        shutil.move(str(img), tmp_out)
        os.replace(tmp_out, out)
    return out


def make_split_usr_images(busybox_deb: Path, in_fstab: bool, dest: Path) -> tuple[Path, Path]:
    """A root file system whose /usr is empty, and the /usr file system (USR_UUID) holding
    what belongs there (os-release: systemd switches only into a root that has one). With
    in_fstab the root's /etc/fstab mounts /usr, as a Debian install with a separate /usr
    has it; else the kernel command line must name it (mount.usr=)."""
    root, usr = dest / "root", dest / "usr"
    root.mkdir(parents=True)
    _populate(root, busybox_deb, SPLIT_USR_INIT)
    shutil.move(str(root / "usr"), usr)
    (root / "usr").mkdir()
    if in_fstab:
        (root / "etc/fstab").write_text(f"UUID={USR_UUID} /usr ext4 defaults 0 2\n")
    out = []
    for d, label, uuid in ((root, LABEL, FS_UUID), (usr, "rdforge-usr", USR_UUID)):
        img = dest / f"{d.name}.img"
        with open(img, "wb") as f:
            f.truncate(32 << 20)
        _mkfs_ext4(d, img, label, uuid)
        out.append(img)
    return out[0], out[1]


def make_swap(dest: Path, size_mb: int = 320) -> Path:
    """A swap device (SWAP_UUID) with no hibernation image in it."""
    with open(dest, "wb") as f:
        f.truncate(size_mb << 20)
    r = subprocess.run(["mkswap", "-U", SWAP_UUID, str(dest)], capture_output=True, text=True)
    if r.returncode != 0:
        raise BootError(f"mkswap failed: {r.stderr.strip()}")
    return dest


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


LUKS_UUID = "7c0f8b2e-3d4a-4f6b-9e1c-2a5b6c7d8e9f"
LUKS_NAME = "cryptroot"


def make_luks_root_image(fs_image: Path, passphrase: str) -> Path:
    """fs_image wrapped in a LUKS2 container (aes-xts-plain64, 512-byte sectors) unlocked by
    passphrase, cached by its inputs.

    The build machines have no device-mapper, so the container cannot be opened to write the
    file system through it. Instead `cryptsetup luksFormat` writes the header with a volume key
    we choose, and the file system is encrypted here with that key exactly as dm-crypt would:
    XTS per 512-byte sector, the tweak being the sector number (plain64)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    fs_sha = hashlib.sha256(fs_image.read_bytes()).hexdigest()
    key = hashlib.sha256(f"{fs_sha}|{passphrase}|{LUKS_UUID}|v1".encode()).hexdigest()
    out = cache_root() / "roots" / f"{key[:16]}.luks.img"
    if out.exists():
        return out
    if not shutil.which("cryptsetup"):
        raise BootError("cryptsetup is not installed (needed for a LUKS test root)")
    # A fixed volume key keeps the cached image reproducible; it protects only test data.
    volume_key = hashlib.sha512(f"rdforge-test-volume-key|{key}".encode()).digest()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rdforge-luks-") as tmp:
        vk, pw, img = Path(tmp, "vk"), Path(tmp, "pw"), Path(tmp, "luks.img")
        vk.write_bytes(volume_key)
        pw.write_text(passphrase)
        size = fs_image.stat().st_size
        with open(img, "wb") as f:
            f.truncate(size + (16 << 20))
        r = subprocess.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2",
                            "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                            "--cipher", "aes-xts-plain64", "--key-size", "512",
                            "--sector-size", "512", "--volume-key-file", str(vk),
                            "--uuid", LUKS_UUID, "--key-file", str(pw), str(img)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BootError(f"cryptsetup luksFormat failed: {r.stderr.strip()}")
        meta = subprocess.run(["cryptsetup", "luksDump", "--dump-json-metadata", str(img)],
                              capture_output=True, text=True, check=True).stdout
        seg = json.loads(meta)["segments"]["0"]
        if seg["encryption"] != "aes-xts-plain64" or int(seg["sector_size"]) != 512:
            raise BootError(f"unexpected LUKS2 segment from cryptsetup: {seg}")
        offset, tweak0 = int(seg["offset"]), int(seg.get("iv_tweak", "0"))
        with open(fs_image, "rb") as src, open(img, "r+b") as dst:
            dst.seek(offset)
            sector = 0
            while block := src.read(1 << 20):
                enc = bytearray()
                for i in range(0, len(block), 512):
                    tweak = (tweak0 + sector).to_bytes(16, "little")
                    c = Cipher(algorithms.AES(volume_key), modes.XTS(tweak)).encryptor()
                    enc += c.update(block[i:i + 512]) + c.finalize()
                    sector += 1
                dst.write(enc)
        fd, tmp_out = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        os.close(fd)
        shutil.move(str(img), tmp_out)
        os.replace(tmp_out, out)
    return out
