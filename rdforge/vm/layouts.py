"""Disks with the storage stacks a Debian install makes (LVM, LUKS, md RAID, btrfs and their
stacks), made by trixie's own lvm2, mdadm, cryptsetup and btrfs-progs inside a VM: the build
machines have no device-mapper, and the point is that real tools wrote the metadata.

The "factory" is an initrd that rdforge builds from trixie's packages (the storage tools
and busybox added), booted with `rdinit=` pointing at a shell script that creates every
layout on the attached raw images, writes the test root into each, and powers off. Partition
tables are written on the host with sfdisk before the boot. The result is cached by all its
inputs; a boot test attaches the disks of one layout (snapshot: the cached images stay as
made) and boots it with the kernel command line the layout names."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rdforge.errors import BootError
from rdforge.formats import cpio
from rdforge.sources.cache import cache_root
from rdforge.vm.rootfs import FS_UUID, LABEL

PASSPHRASE = "rdforge-test"
LUKS2_UUID = "2f1e9c44-5b7a-4d1e-8c3b-6a9d0e1f2a3b"
LUKS1_UUID = "a4b3c2d1-1e2f-4a5b-9c8d-7e6f5a4b3c2d"
ENC_RAID_UUID = "c0ffee00-1234-4cde-8f00-112233445566"
BTRFS_UUID = "b7f5e3d1-0a2c-4e6f-8a1b-3c5d7e9f0a2c"
BTRFS_RAID_UUID = "d2c4e6f8-1a3b-4c5d-9e7f-0a1b2c3d4e5f"
LUKS_TPM_UUID = "5e1f0c2b-7a3d-4b8e-9f60-1d2c3b4a5e6f"
LUKS_RESUME_UUID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
# The PCRs the TPM-enrolled volume is bound to. Under SeaBIOS, PCR 0 holds the firmware and
# PCR 2 the option ROMs it ran: a boot with a new network card (its iPXE ROM) changes PCR 2.
TPM_PCRS = "0+2"
DONE = "RDFORGE-FACTORY-DONE"
FAILED = "RDFORGE-FACTORY-FAILED"

RAID_TYPE = "A19D880F-05FC-4D3B-A006-743F0F84911E"
LVM_TYPE = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69E47D7DE4"


@dataclass(frozen=True)
class Layout:
    name: str
    disks: tuple[str, ...]  # image names (serial numbers in the factory)
    root_arg: str  # the kernel command line that boots it
    passphrase: bool = False  # the boot asks for PASSPHRASE
    partitions: tuple[tuple[str, str], ...] = ()  # (disk, sfdisk script) made on the host
    size_mb: int = 112
    tpm: bool = False  # enrolled in the factory's TPM: boot it with a copy of that TPM


INSTALLER_GPT = (f"label: gpt\nsize=8MiB, type={ESP_TYPE}\nsize=32MiB, type={LINUX_TYPE}\n"
                 f"type={LINUX_TYPE}\n")
ONE_PART = "label: gpt\ntype={}\n"

LAYOUTS: tuple[Layout, ...] = (
    Layout("lvm", ("lvm",), "root=/dev/mapper/vg0-root"),
    Layout("lvm-dash", ("lvmdash",), "root=/dev/mapper/vg--sys-lv--root",
           partitions=(("lvmdash", ONE_PART.format(LVM_TYPE)),)),
    # A volume group grown onto a second disk: the root LV spans both physical volumes.
    Layout("lvm-span", ("spana", "spanb"), "root=/dev/vgspan/root", size_mb=48),
    # Root on a thin volume of an LVM thin pool (lvcreate --thin).
    Layout("lvm-thin", ("lvmthin",), "root=/dev/mapper/vgthin-root"),
    # The Debian installer's "guided - use entire disk and set up encrypted LVM": ESP,
    # /boot, and a LUKS2 partition holding the VG with root and swap.
    Layout("luks-lvm", ("lukslvm",), f"rd.luks.uuid={LUKS2_UUID} root=/dev/mapper/debian--vg-root",
           passphrase=True, partitions=(("lukslvm", INSTALLER_GPT),), size_mb=160),
    Layout("luks1", ("luks1",), f"rd.luks.name={LUKS1_UUID}=cryptroot root=/dev/mapper/cryptroot",
           passphrase=True),
    Layout("raid1", ("raid1a", "raid1b"), f"root=UUID={FS_UUID}",
           partitions=(("raid1a", ONE_PART.format(RAID_TYPE)), ("raid1b", ONE_PART.format(RAID_TYPE)))),
    Layout("raid1-meta10", ("r10a", "r10b"), f"root=LABEL={LABEL}"),
    Layout("raid1-meta090", ("r090a", "r090b"), f"root=UUID={FS_UUID}"),
    Layout("raid5", ("r5a", "r5b", "r5c"), f"root=UUID={FS_UUID}", size_mb=64),
    # dracut's TEST-26-ENC-RAID-LVM: LVM on LUKS on an md RAID1 of two partitions.
    Layout("enc-raid-lvm", ("encra", "encrb"), f"rd.luks.uuid={ENC_RAID_UUID} root=/dev/vgcrypt/root",
           passphrase=True, partitions=(("encra", ONE_PART.format(RAID_TYPE)),
                                        ("encrb", ONE_PART.format(RAID_TYPE))), size_mb=128),
    Layout("btrfs-subvol", ("btrfs",), f"root=UUID={BTRFS_UUID} rootflags=subvol=@rootfs",
           size_mb=128),
    Layout("btrfs-raid1", ("btrfsa", "btrfsb"), f"root=UUID={BTRFS_RAID_UUID}", size_mb=128),
    # LUKS2 with a passphrase slot and a TPM2 slot enrolled by systemd-cryptenroll.
    Layout("luks-tpm", ("lukstpm",),
           f"rd.luks.uuid={LUKS_TPM_UUID} root=/dev/mapper/luks-{LUKS_TPM_UUID}", tpm=True),
    # Hibernation to a swap LV inside LUKS, as the installer's encrypted LVM has it; the root
    # is the test root that hibernates (rootfs.HIBERNATE_INIT), the swap holds no image yet.
    Layout("luks-lvm-resume", ("luksresume",),
           f"rd.luks.uuid={LUKS_RESUME_UUID} root=/dev/mapper/vgres-root "
           "resume=/dev/mapper/vgres-swap", passphrase=True, size_mb=256),
)
BY_NAME = {layout.name: layout for layout in LAYOUTS}

# busybox sh; lvm, mdadm and cryptsetup without udev (they make their device nodes
# themselves). Fast key derivation: the VM runs under emulation, and the data is a test's.
SCRIPT = f"""#!/usr/bin/busybox sh
export PATH=/usr/sbin:/usr/bin DM_DISABLE_UDEV=1 MDADM_NO_UDEV=1
bb=/usr/bin/busybox
$bb mount -t proc proc /proc; $bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev; $bb mount -t tmpfs run /run
$bb mkdir -p /run/cryptsetup /run/lvm /run/mdadm /src /mnt
fail() {{ echo "{FAILED}: $*"; $bb poweroff -f; }}
step() {{ echo "factory: $*"; }}
for m in virtio_blk dm_mod dm_crypt dm_thin_pool raid1 raid456 md_mod ext4 btrfs tpm_tis; do
    modprobe $m || fail "modprobe $m"
done
$bb sleep 1
[ -c /dev/tpmrm0 ] || fail "no TPM (/dev/tpmrm0)"
dev() {{
    for d in /sys/block/vd*; do
        [ "$($bb cat $d/serial 2>/dev/null)" = "$1" ] && {{ echo /dev/${{d##*/}}; return; }}
    done
    fail "no disk $1"
}}
lvm() {{ /usr/sbin/lvm "$@" || fail "lvm $*"; }}
pw() {{ printf %s {PASSPHRASE}; }}
luks() {{  # type uuid device name
    pw | cryptsetup luksFormat --batch-mode --type $1 --pbkdf pbkdf2 \\
        --pbkdf-force-iterations 1000 --uuid $2 --key-file - $3 || fail "luksFormat $3"
    pw | cryptsetup open --key-file - $3 $4 || fail "open $3"
}}
md() {{  # device metadata level members...
    local d=$1 meta=$2 level=$3; shift 3
    local name="--homehost=factory --name=${{d##*/}}"
    [ $meta = 0.90 ] && name=
    echo y | mdadm --create $d --run --assume-clean --level=$level --raid-devices=$# \\
        --metadata=$meta $name "$@" || fail "mdadm --create $d"
}}
put_root() {{ $bb dd if=${{2:-$SRC}} of=$1 bs=1M conv=fsync 2>/dev/null || fail "dd to $1"; }}
copy_root() {{ $bb cp -a /src/. $1/ || fail "copy to $1"; }}
SRC=$(dev src)
$bb mount -o ro -t ext4 $SRC /src || fail "mount the source root"

step lvm
lvm pvcreate -ff -y $(dev lvm); lvm vgcreate vg0 $(dev lvm)
lvm lvcreate -y -L 64M -n root vg0; put_root /dev/vg0/root; lvm vgchange -an vg0

step lvm-dash
lvm pvcreate -ff -y $(dev lvmdash)1; lvm vgcreate vg-sys $(dev lvmdash)1
lvm lvcreate -y -L 64M -n lv-root vg-sys; put_root /dev/vg-sys/lv-root; lvm vgchange -an vg-sys

step lvm-span
lvm pvcreate -ff -y $(dev spana) $(dev spanb); lvm vgcreate vgspan $(dev spana) $(dev spanb)
lvm lvcreate -y -L 64M -n root vgspan; put_root /dev/vgspan/root; lvm vgchange -an vgspan

step lvm-thin
lvm pvcreate -ff -y $(dev lvmthin); lvm vgcreate vgthin $(dev lvmthin)
lvm lvcreate -y -L 96M -T vgthin/pool; lvm lvcreate -y -V 64M -T vgthin/pool -n root
put_root /dev/vgthin/root; lvm vgchange -an vgthin

step luks-lvm
luks luks2 {LUKS2_UUID} $(dev lukslvm)3 luks-inst
lvm pvcreate -ff -y /dev/mapper/luks-inst; lvm vgcreate debian-vg /dev/mapper/luks-inst
lvm lvcreate -y -L 64M -n root debian-vg; lvm lvcreate -y -L 16M -n swap_1 debian-vg
put_root /dev/debian-vg/root; mkswap /dev/debian-vg/swap_1 >/dev/null || fail mkswap
lvm vgchange -an debian-vg; cryptsetup close luks-inst || fail "close luks-inst"

step luks1
luks luks1 {LUKS1_UUID} $(dev luks1) luks-one; put_root /dev/mapper/luks-one
cryptsetup close luks-one || fail "close luks-one"

step raid1
md /dev/md1 1.2 1 $(dev raid1a)1 $(dev raid1b)1; put_root /dev/md1; mdadm --stop /dev/md1
step raid1-meta10
md /dev/md2 1.0 1 $(dev r10a) $(dev r10b); put_root /dev/md2; mdadm --stop /dev/md2
step raid1-meta090
md /dev/md3 0.90 1 $(dev r090a) $(dev r090b); put_root /dev/md3; mdadm --stop /dev/md3
step raid5
md /dev/md4 1.2 5 $(dev r5a) $(dev r5b) $(dev r5c); put_root /dev/md4; mdadm --stop /dev/md4

step enc-raid-lvm
md /dev/md5 1.2 1 $(dev encra)1 $(dev encrb)1
luks luks2 {ENC_RAID_UUID} /dev/md5 luks-md
lvm pvcreate -ff -y /dev/mapper/luks-md; lvm vgcreate vgcrypt /dev/mapper/luks-md
lvm lvcreate -y -L 64M -n root vgcrypt; put_root /dev/vgcrypt/root; lvm vgchange -an vgcrypt
cryptsetup close luks-md || fail "close luks-md"; mdadm --stop /dev/md5

step btrfs-subvol
mkfs.btrfs -q -f -L {LABEL} -U {BTRFS_UUID} $(dev btrfs) || fail mkfs.btrfs
$bb mount -t btrfs $(dev btrfs) /mnt || fail "mount btrfs"
btrfs -q subvolume create /mnt/@rootfs || fail "subvolume create"
copy_root /mnt/@rootfs; $bb umount /mnt

step btrfs-raid1
mkfs.btrfs -q -f -d raid1 -m raid1 -L {LABEL} -U {BTRFS_RAID_UUID} $(dev btrfsa) $(dev btrfsb) \\
    || fail "mkfs.btrfs raid1"
btrfs device scan >/dev/null || fail "btrfs device scan"
$bb mount -t btrfs $(dev btrfsa) /mnt || fail "mount btrfs raid1"
copy_root /mnt; $bb umount /mnt

step luks-tpm
luks luks2 {LUKS_TPM_UUID} $(dev lukstpm) luks-tpm; put_root /dev/mapper/luks-tpm
cryptsetup close luks-tpm || fail "close luks-tpm"
PASSWORD={PASSPHRASE} systemd-cryptenroll --tpm2-device=auto --tpm2-pcrs={TPM_PCRS} \\
    $(dev lukstpm) || fail "systemd-cryptenroll"

step luks-lvm-resume
luks luks2 {LUKS_RESUME_UUID} $(dev luksresume) luks-res
lvm pvcreate -ff -y /dev/mapper/luks-res; lvm vgcreate vgres /dev/mapper/luks-res
lvm lvcreate -y -L 64M -n root vgres; lvm lvcreate -y -L 160M -n swap vgres
put_root /dev/vgres/root $(dev srchib); mkswap /dev/vgres/swap >/dev/null || fail mkswap
lvm vgchange -an vgres; cryptsetup close luks-res || fail "close luks-res"

$bb umount /src; $bb sync
echo "{DONE}"
$bb poweroff -f
"""

FACTORY_PACKAGES = ("cryptsetup-bin", "btrfs-progs", "busybox-static", "systemd-cryptsetup",
                    "thin-provisioning-tools")


def _factory_initrd(dest: Path) -> Path:
    """rdforge's own initrd of trixie's packages plus the storage tools, every program kept."""
    from rdforge.config import Config
    from rdforge.outputs.initrd import build

    img = dest / "factory.img"
    build(Config(output=str(img), lock=str(dest / "factory.lock"),
                 add_packages=list(FACTORY_PACKAGES), keep=["usr/sbin/*", "usr/bin/*"],
                 compression="none"))
    return img


def _with_script(initrd: Path, out: Path) -> Path:
    from rdforge.formats.extra import append_extra

    buf = io.BytesIO()
    cpio.write(buf, [cpio.CpioEntry("factory", stat.S_IFREG | 0o755, data=SCRIPT.encode())])
    out.write_bytes(append_extra(initrd.read_bytes(), buf.getvalue()))
    return out


def _key(source_root: Path, hibernate_root: Path) -> str:
    h = hashlib.sha256(SCRIPT.encode())
    for layout in LAYOUTS:
        h.update(repr(layout).encode())
    h.update(source_root.name.encode())
    h.update(hibernate_root.name.encode())
    h.update(",".join(FACTORY_PACKAGES).encode())
    return h.hexdigest()[:16]


def make_layouts(source_root: Path, timeout: float = 900) -> Path:
    """The directory holding every layout's disk images (NAME.img), made once and cached.
    Concurrent callers (test workers) wait for the one that makes them."""
    from rdforge.vm.boot import BootOptions, boot, busybox_deb
    from rdforge.vm.rootfs import HIBERNATE_INIT, make_root_image

    hibernate_root = make_root_image(busybox_deb(), init=HIBERNATE_INIT)
    base = cache_root() / "layouts"
    out = base / _key(source_root, hibernate_root)
    if (out / "done").exists():
        return out
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if (out / "done").exists():
            return out
        if not shutil.which("sfdisk"):
            raise BootError("sfdisk is not installed (needed for the layout disks' partitions)")
        with tempfile.TemporaryDirectory(prefix=".layouts-", dir=base) as tmp:
            work = Path(tmp)
            names: list[str] = []
            for layout in LAYOUTS:
                parts = dict(layout.partitions)
                for disk in layout.disks:
                    img = work / f"{disk}.img"
                    with open(img, "wb") as f:
                        f.truncate(layout.size_mb << 20)
                    if disk in parts:
                        r = subprocess.run(["sfdisk", "-q", str(img)], input=parts[disk],
                                           capture_output=True, text=True)
                        if r.returncode != 0:
                            raise BootError(f"sfdisk {disk}: {r.stderr.strip()}")
                    names.append(disk)
            (work / "tpm").mkdir()  # the factory's TPM, which luks-tpm is enrolled in
            src, srchib = work / "src.img", work / "srchib.img"
            shutil.copyfile(source_root, src)
            shutil.copyfile(hibernate_root, srchib)
            factory = _with_script(_factory_initrd(work), work / "factory-run.img")
            opts = BootOptions(initrd=factory, echo=False, timeout=timeout, expect=DONE,
                               expect_fail=(FAILED,), append="rdinit=/factory",
                               disks=(src, srchib, *(work / f"{n}.img" for n in names)),
                               disk_serials=("src", "srchib", *names), disks_writable=True,
                               tpm_state=work / "tpm",
                               log=work / "factory.log")
            res = boot(opts)
            if not res.ok:
                tail = "\n".join(res.console.splitlines()[-15:])
                raise BootError(f"the layout factory failed: {res.reason}\n{tail}")
            final = work / "out"
            final.mkdir()
            for n in names:
                os.replace(work / f"{n}.img", final / f"{n}.img")
            shutil.copyfile(work / "factory.log", final / "factory.log")
            os.replace(work / "tpm", final / "tpm")
            (final / "done").write_text("")
            os.replace(final, out)
    return out


def layout_disks(layout: Layout, source_root: Path) -> list[Path]:
    d = make_layouts(source_root)
    return [d / f"{disk}.img" for disk in layout.disks]


def layout_tpm(source_root: Path, dest: Path) -> Path:
    """A copy of the factory's TPM state (swtpm writes to its state) for one boot."""
    shutil.copytree(make_layouts(source_root) / "tpm", dest)
    return dest
