"""EFI system partition images for UEFI boots, made without mounting anything (mkfs.vfat and
mtools): the UKI as the removable-media boot loader, and its extra.d folder; and a whole GPT
disk holding such an ESP beside a root partition typed as the Discoverable Partitions
Specification says, for a boot with no root= at all."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid as uuidlib
from pathlib import Path

from rdforge.errors import BootError
from rdforge.formats import creds, gpt
from rdforge.formats.ddi import TYPES

LOADER = "EFI/BOOT/BOOTX64.EFI"
# What systemd-stub picks up from the UKI's extra.d folder, by suffix.
EXTRA_SUFFIXES = (".cred", ".sysext.raw", ".confext.raw", ".addon.efi")


def extra_name(f: Path) -> str:
    """The name a file gets in extra.d: a plain .raw sysext becomes NAME.sysext.raw."""
    if f.name.endswith(EXTRA_SUFFIXES):
        return f.name
    if f.suffix == ".raw":
        return f.name[:-4] + ".sysext.raw"
    if f.suffix == ".efi":
        return f.name[:-4] + ".addon.efi"
    raise BootError(f"{f}: systemd-stub takes *.cred, *.sysext.raw, *.confext.raw and "
                    "*.addon.efi from a UKI's extra.d folder")


def _run(cmd: list[str]) -> None:
    if not shutil.which(cmd[0]):
        pkg = "dosfstools" if cmd[0].startswith("mkfs") else "mtools"
        raise BootError(f"{cmd[0]} is not installed (apt-get install {pkg})")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BootError(f"{' '.join(cmd[:2])}: {(r.stderr or r.stdout).strip()}")


def make_esp(uki: Path, extras: list[Path], dest: Path) -> Path:
    files = [uki, *extras]
    for f in files:
        if not f.is_file():
            raise BootError(f"{f}: no such file")
    size = sum(f.stat().st_size for f in files)
    kib = max(33 * 1024, (size * 11 // 10 + (8 << 20)) // 1024)  # FAT32 wants >= 32 MiB
    if dest.exists():
        dest.unlink()
    _run(["mkfs.vfat", "-C", "-F", "32", "-n", "ESP", str(dest), str(kib)])
    img = ["-i", str(dest)]
    _run(["mmd", *img, "::/EFI", "::/EFI/BOOT"])
    _run(["mcopy", *img, str(uki), f"::/{LOADER}"])
    if extras:
        _run(["mmd", *img, f"::/{LOADER}.extra.d"])
        with tempfile.TemporaryDirectory(prefix="rdforge-esp-") as tmp:
            for f in extras:
                src = f
                if f.name.endswith(".cred"):
                    # In the form its consumer reads, as in extra_cpio.
                    src = Path(tmp, f.name)
                    src.write_bytes(creds.for_initrd(f.name.removesuffix(".cred"),
                                                     f.read_bytes()))
                _run(["mcopy", *img, str(src), f"::/{LOADER}.extra.d/{extra_name(f)}"])
    return dest


def secure_boot_vars(cert: Path, dest: Path) -> Path:
    """An OVMF variable store with Secure Boot on: a generated platform key and KEK, and
    `cert` in db (so the firmware runs images it signed, and Linux puts it in its platform
    keyring). Made with virt-fw-vars from the virt-firmware package."""
    exe = shutil.which("virt-fw-vars")
    if exe is None:
        raise BootError("virt-fw-vars is not installed (pip install virt-firmware)")
    base = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
    if not base.exists():
        raise BootError(f"{base} is missing (apt-get install ovmf)")
    owner = "a7f3c9e2-51b4-4d8e-9c06-2f1e8b3d7a45"  # the signature owner GUID rdforge uses
    _run([exe, "-i", str(base), "-o", str(dest), "--enroll-generate", "rdforge test platform key",
          "--no-microsoft", "--add-db", owner, str(cert), "--sb"])
    return dest


def make_esp_from_tree(tree: Path, dest: Path, room_mib: int = 16) -> Path:
    """An ESP image holding a directory tree: what `bootctl install` and kernel-install put
    on a system's ESP (systemd-boot, loader entries, kernels, initrds, UKIs), with room_mib
    free (for a guest that installs another kernel there)."""
    if not tree.is_dir():
        raise BootError(f"{tree}: no such directory")
    size = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
    kib = max(33 * 1024, (size * 11 // 10 + (room_mib << 20)) // 1024)
    if dest.exists():
        dest.unlink()
    _run(["mkfs.vfat", "-C", "-F", "32", "-n", "ESP", str(dest), str(kib)])
    entries = sorted(tree.iterdir())
    if entries:
        _run(["mcopy", "-s", "-i", str(dest), *map(str, entries), "::/"])
    return dest


ESP_TYPE = uuidlib.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
# Fixed, so that the same inputs give the same disk.
GPT_DISK_UUID = uuidlib.UUID("7d0a3f52-8f4e-4d7b-a1c3-5b2e9f6d8a10")
ROOT_PART_UUID = uuidlib.UUID("3e1b6c0d-27a4-4f59-9d8e-c4a7b2f1e605")


def make_gpt_disk(esp: Path, root: Path, dest: Path, arch: str = "x86-64") -> Path:
    """One disk: a GPT with the ESP image and the root file system image as partitions, the
    root typed as the architecture's root partition. Booted from that ESP, systemd-stub
    names the partition it came from (LoaderDevicePartUUID), and systemd-gpt-auto-generator
    in the initrd mounts the root it finds on the same disk."""
    parts, files = [], []
    for f, type_uuid, part_uuid, name in (
            (esp, ESP_TYPE, uuidlib.uuid5(GPT_DISK_UUID, "esp"), "esp"),
            (root, uuidlib.UUID(TYPES[arch][0]), ROOT_PART_UUID, f"root-{arch}")):
        size = f.stat().st_size
        parts.append(gpt.Partition(type_uuid, part_uuid, name, -(-size // gpt.SECTOR) * gpt.SECTOR))
        files.append(f)
    placed, total = gpt.layout(parts)
    with open(dest, "wb") as out:
        out.truncate(total)
        gpt.write_table(out, placed, total, GPT_DISK_UUID)
        for pl, f in zip(placed, files, strict=True):
            out.seek(pl.offset)
            with open(f, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    return dest
