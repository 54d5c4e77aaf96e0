"""Kernel modules: index a kernel package once, select a module set, close it under
depends/softdeps, and generate modules.dep and friends for exactly that set."""

from __future__ import annotations

import collections
import fnmatch
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rdforge.errors import KernelError
from rdforge.formats.deb import DebFile
from rdforge.formats.elf import modinfo
from rdforge.fsutil import hold_lock, sweep_work_dirs
from rdforge.sources.cache import cache_root
from rdforge.tree.depmod import Depmod, depmod_for
from rdforge.tree.model import FILE, Entry, Tree

INDEX_VERSION = 2  # 2: the sha256 of every file extracted (checked on use)

# The generic profile: what boots common machines (paths relative to lib/modules/KVER/kernel).
GENERIC_MODULES: tuple[str, ...] = (
    "drivers/virtio/*", "drivers/block/virtio_blk.*", "drivers/scsi/virtio_scsi.*",
    "drivers/net/virtio_net.*", "drivers/char/hw_random/virtio-rng.*",
    "drivers/block/loop.*", "drivers/block/nbd.*",
    "drivers/ata/*", "drivers/nvme/host/nvme.*", "drivers/nvme/host/nvme-core.*",
    "drivers/scsi/sd_mod.*", "drivers/scsi/sr_mod.*",
    "drivers/scsi/sg.*", "drivers/scsi/scsi_transport_sas.*", "drivers/scsi/mpt3sas/*",
    "drivers/scsi/megaraid/*", "drivers/scsi/hpsa.*", "drivers/scsi/smartpqi/*",
    "drivers/scsi/aacraid/*", "drivers/scsi/vmw_pvscsi.*", "drivers/scsi/hv_storvsc.*",
    "drivers/message/fusion/*",
    "drivers/usb/host/*hci*", "drivers/usb/storage/*", "drivers/usb/typec/ucsi/*",
    "drivers/hid/hid-generic.*", "drivers/hid/usbhid/*", "drivers/hid/hid.*",
    "drivers/hid/hid-apple.*", "drivers/hid/hid-logitech*", "drivers/hid/hid-microsoft.*",
    "drivers/input/keyboard/atkbd.*", "drivers/input/serio/*",
    "drivers/mmc/host/sdhci*", "drivers/mmc/core/*", "drivers/memstick/*",
    "fs/ext4/*", "fs/xfs/*", "fs/btrfs/*", "fs/fat/*", "fs/nls/nls_cp437.*",
    "fs/nls/nls_iso8859-1.*", "fs/nls/nls_utf8.*", "fs/erofs/*", "fs/squashfs/*",
    "fs/overlayfs/*", "fs/isofs/*",
    # EFI variables: without them systemd in the initrd cannot tell a measured UKI boot (PCR
    # phases, TPM setup) nor find the boot disk systemd-stub names (LoaderDevicePartUUID).
    "fs/efivarfs/*",
    "drivers/md/dm-mod.*", "drivers/md/dm-crypt.*", "drivers/md/dm-verity.*",
    "drivers/md/dm-integrity.*", "drivers/md/dm-bufio.*", "drivers/md/raid*", "drivers/md/md-mod.*",
    # LVM's other targets: a snapshot of the root LV turns its origin into a snapshot-origin
    # device, and lvcreate --type raid1/mirror, --thin and --type cache make dm-raid,
    # dm-mirror, dm-thin-pool and dm-cache ones (about 230 kB, stored as xz). Thin and cache
    # pools also need thin-provisioning-tools' checkers, which are not in the default image.
    "drivers/md/dm-snapshot.*", "drivers/md/dm-mirror.*", "drivers/md/dm-log.*",
    "drivers/md/dm-region-hash.*", "drivers/md/dm-raid.*", "drivers/md/dm-thin-pool.*",
    "drivers/md/dm-bio-prison.*", "drivers/md/persistent-data/*", "drivers/md/dm-cache*",
    "drivers/char/tpm/*", "crypto/*", "arch/x86/crypto/*",
    "drivers/hv/*", "drivers/xen/xen-*front*", "drivers/xen/xenbus/*", "drivers/block/xen-blkfront.*",
    "drivers/firmware/qemu_fw_cfg.*",
)

# Modules stored plain: what common machines load on every boot on their way to the root
# (virtual and PC storage, USB and keyboards, ext4, device mapper, sysext file systems, the
# crypto and library helpers). The image is compressed as a whole, so they cost no space, and
# the kernel loads them as they are. All others stay as the kernel package ships them (xz, one
# by one), decompressed by the kernel only if one is loaded: the kernel unpacks the initramfs
# before it starts anything, and a generic image's rarely loaded modules (xfs, btrfs, server
# HBAs, MMC, PATA, hypervisor drivers, ...) were half of what it had to unpack.
PLAIN_MODULES: tuple[str, ...] = (
    "drivers/virtio/*", "drivers/block/virtio_blk.*", "drivers/scsi/virtio_scsi.*",
    "drivers/net/virtio_net.*", "drivers/net/net_failover.*", "net/core/failover.*",
    "drivers/char/hw_random/virtio-rng.*", "drivers/block/loop.*",
    "drivers/ata/ahci.*", "drivers/ata/libahci.*", "drivers/ata/libata.*", "drivers/ata/ata_piix.*",
    "drivers/ata/ata_generic.*", "drivers/nvme/host/*",
    "drivers/scsi/scsi_mod.*", "drivers/scsi/scsi_common.*", "drivers/scsi/sd_mod.*",
    "drivers/scsi/sr_mod.*", "drivers/cdrom/*",
    "drivers/usb/host/xhci-*", "drivers/usb/host/ehci-*", "drivers/usb/host/ohci-*",
    "drivers/usb/host/uhci-*", "drivers/usb/core/*", "drivers/usb/common/*",
    "drivers/usb/storage/usb-storage.*", "drivers/usb/storage/uas.*",
    "drivers/hid/hid.*", "drivers/hid/hid-generic.*", "drivers/hid/usbhid/*",
    "drivers/input/serio/*", "drivers/input/keyboard/atkbd.*", "drivers/input/vivaldi-fmap.*",
    "fs/ext4/*", "fs/jbd2/*", "fs/mbcache.*", "fs/efivarfs/*", "fs/erofs/*", "fs/squashfs/*",
    "fs/overlayfs/*", "drivers/md/dm-mod.*", "drivers/md/dm-crypt.*", "drivers/md/dm-verity.*",
    "drivers/md/dm-bufio.*", "drivers/char/tpm/*", "drivers/firmware/qemu_fw_cfg.*",
    "crypto/*", "arch/x86/crypto/*", "lib/*",
)


def _path_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """Shell patterns for module paths under kernel/, as one regular expression."""
    return re.compile("|".join(fnmatch.translate("kernel/" + p) for p in patterns))


def plain_matcher(patterns: tuple[str, ...]) -> Callable[[Module], bool]:
    rx = _path_regex(patterns)
    return lambda m: bool(rx.match(m.path))


@dataclass
class Module:
    name: str
    path: str  # relative to lib/modules/KVER
    depends: list[str] = field(default_factory=list)
    softdep_pre: list[str] = field(default_factory=list)
    softdep_post: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    firmware: list[str] = field(default_factory=list)


@dataclass
class KernelIndex:
    kver: str
    root: Path  # cache dir: vmlinuz, modules/ (the lib/modules/KVER tree)
    modules: dict[str, Module]
    builtin: set[str]
    digests: dict[str, str] = field(default_factory=dict)  # file -> sha256, when cached
    local: bool = False  # root is an installed kernel's lib/modules/KVER, not a cache dir

    @property
    def vmlinuz(self) -> Path:
        return self.root / "vmlinuz"

    def read(self, rel: str) -> bytes:
        """A file of the kernel's tree (modules/..., vmlinuz), checked against the sha256
        taken when it was extracted from the verified package."""
        if self.local:
            return (self.moddir / rel.removeprefix("modules/")).read_bytes()
        data = (self.root / rel).read_bytes()
        want = self.digests.get(rel)
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            raise DamagedCache(self.root, rel)
        return data

    @property
    def moddir(self) -> Path:
        return self.root if self.local else self.root / "modules"


class DamagedCache(KernelError):
    """A file in a kernel's cache directory is not what was extracted."""

    def __init__(self, root: Path, rel: str) -> None:
        super().__init__(f"cache {root}: {rel} differs from what was extracted from the "
                         "kernel package")
        self.root, self.rel = root, rel


def drop_kernel_cache(root: Path, why: str) -> None:
    from rdforge.sources.cache import report_damaged

    report_damaged(root, why)
    shutil.rmtree(root, ignore_errors=True)


def verified_vmlinuz(root: Path) -> Path:
    """The cached kernel image of a kernel cache directory, checked against the sha256 taken
    when it came out of its package: a damaged one never goes into a boot or a UKI."""
    vmlinuz = root / "vmlinuz"
    try:
        idx = json.loads((root / f"index.v{INDEX_VERSION}.json").read_text())
        want = str(idx["digests"]["vmlinuz"])
    except (OSError, ValueError, KeyError, TypeError):
        raise KernelError(f"cache {root}: no index to check vmlinuz against; build an initrd "
                          "for this kernel again") from None
    if hashlib.sha256(vmlinuz.read_bytes()).hexdigest() != want:
        drop_kernel_cache(root, "vmlinuz differs from the kernel package's")
        raise KernelError(f"cache {root}: vmlinuz was damaged and is dropped; build the initrd "
                          "again to extract it anew")
    return vmlinuz


def find_kernel(initrd: Path, kernel_version: str = "") -> Path:
    """The vmlinuz of the kernel package the initrd's modules came from (from the cache)."""
    kroot = cache_root() / "kernels"  # where index_kernel_deb extracts kernels
    manifest = initrd.with_name(initrd.name + ".manifest.json")
    if not kernel_version and manifest.exists():
        m = json.loads(manifest.read_text())
        kp = m.get("kernel_package") or {}
        sha = str(kp.get("sha256", ""))
        if sha and (kroot / sha / "vmlinuz").exists():
            return verified_vmlinuz(kroot / sha)
        kernel_version = m.get("kernel_version", "")
    found = []
    for idx in sorted(kroot.glob(f"*/index.v{INDEX_VERSION}.json")):
        try:
            kver = json.loads(idx.read_text()).get("kver", "")
        except (OSError, ValueError, AttributeError):
            continue  # a damaged index: the next build of that kernel extracts it again
        if not kernel_version or kver == kernel_version:
            found.append((idx.stat().st_mtime, idx.parent / "vmlinuz"))
    if not found:
        raise KernelError("no cached kernel" + (f" {kernel_version}" if kernel_version else "")
                        + "; build an initrd first or give --kernel")
    return verified_vmlinuz(sorted(found)[-1][1].parent)


def modname(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base).replace("-", "_")


def _read_ko(data: bytes) -> bytes:
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 28)
    return data


def _parse_module(path: str, data: bytes) -> Module:
    m = Module(modname(path), path)
    for k, v in modinfo(_read_ko(data)):
        if k == "depends" and v:
            m.depends = [d.replace("-", "_") for d in v.split(",") if d]
        elif k == "alias":
            m.aliases.append(v)
        elif k == "firmware":
            m.firmware.append(v)
        elif k == "softdep":
            for part in re.split(r"\s+(?=(?:pre|post):)", v.strip()):
                kind, _, names = part.partition(":")
                lst = m.softdep_pre if kind.strip() == "pre" else m.softdep_post
                lst += [n.replace("-", "_") for n in names.split()]
    return m


def _package_members(path: Path) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """A kernel package's files: a .deb's data.tar, or an .rpm's (checked) payload."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"\xed\xab\xee\xdb":  # an rpm lead
        from rdforge.tree.unpack import rpm_members

        yield from rpm_members(path, 1 << 30)
        return
    with DebFile(path) as d:
        yield from d.data()


def index_kernel_deb(deb: Path, sha256: str) -> KernelIndex:
    """Extract vmlinuz and the module tree of a kernel package into the cache, once: Debian's
    linux-image (/boot/vmlinuz-KVER) or Fedora's kernel-core (/usr/lib/modules/KVER/vmlinuz)."""
    root = cache_root() / "kernels" / sha256
    idx = root / f"index.v{INDEX_VERSION}.json"
    if idx.exists():
        try:
            return _load(root, idx)
        except Exception as e:  # noqa: BLE001 - any damage: extract the package again
            drop_kernel_cache(root, f"its index does not load: {type(e).__name__}")
    sweep_work_dirs(cache_root(), ".kernel-")
    tmp = Path(tempfile.mkdtemp(dir=cache_root(), prefix=".kernel-"))
    held = hold_lock(tmp)
    kver = ""
    modules: dict[str, Module] = {}
    builtin: set[str] = set()
    digests: dict[str, str] = {}
    # Reading each module's .modinfo means decompressing it: on a second core, a bounded
    # number at a time (lzma works without the interpreter lock), while the package is read.
    pool = ThreadPoolExecutor(max_workers=2)
    pending: collections.deque[Future[Module]] = collections.deque()

    def collect(limit: int) -> None:
        while len(pending) > limit:
            mod = pending.popleft().result()
            modules[mod.name] = mod

    try:
        for ti, content in _package_members(deb):
            name = ti.name.lstrip("./")
            m = re.match(r"^(?:usr/)?lib/modules/([^/]+)/(.+)$", name)
            if m and m.group(2) == "vmlinuz" and content is not None:
                name = f"boot/vmlinuz-{m.group(1)}"
            if name.startswith("boot/vmlinuz-") and content is not None:
                (tmp / "vmlinuz").write_bytes(content)
                digests["vmlinuz"] = hashlib.sha256(content).hexdigest()
                kver = name[len("boot/vmlinuz-"):]
            elif m and content is not None:
                kver = kver or m.group(1)
                rel = m.group(2)
                dest = tmp / "modules" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(content)
                digests[f"modules/{rel}"] = hashlib.sha256(content).hexdigest()
                if re.search(r"\.ko(\.\w+)?$", rel):
                    pending.append(pool.submit(_parse_module, rel, content))
                    collect(16)
                elif rel == "modules.builtin":
                    builtin = {modname(x) for x in content.decode().split()}
        collect(0)
        if not kver or not (tmp / "vmlinuz").exists():
            raise KernelError(f"{deb}: no kernel image (boot/vmlinuz-* or usr/lib/modules/*/vmlinuz) "
                              "in this kernel package")
        data = {"kver": kver, "builtin": sorted(builtin), "digests": digests,
                "modules": {k: vars(v) for k, v in sorted(modules.items())}}
        (tmp / idx.name).write_text(json.dumps(data))
        root.parent.mkdir(parents=True, exist_ok=True)
        if idx.exists():  # a concurrent build indexed the same package first: use theirs
            return _load(root, idx)
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(tmp, root)
            (root / ".in-use").unlink(missing_ok=True)
        except OSError:
            if not idx.exists():
                raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        os.close(held)
    return _load(root, idx)


# Where an installed kernel's modules come from, most preferred first: depmod's default search
# order puts updates/ (DKMS's place on Debian) before the kernel's own, and extra/ after.
_MODULE_DIR_RANK = {"updates": 0, "kernel": 1, "extra": 2}


def index_module_dir(moddir: Path) -> KernelIndex:
    """Index an installed kernel's lib/modules/KVER directory (DKMS and custom kernels): the
    directory's name is the kernel version. A module found in several places is taken from
    the first of updates/, kernel/, extra/, then any other directory."""
    if not moddir.is_dir():
        raise KernelError(f"{moddir}: no such modules directory")
    if not (moddir / "kernel").is_dir() and not any(moddir.glob("*.ko*")):
        raise KernelError(f"{moddir}: not a lib/modules/KVER directory (it has no kernel/)")
    modules: dict[str, Module] = {}
    found = [p for p in moddir.rglob("*.ko*") if p.is_file() and re.search(r"\.ko(\.\w+)?$", p.name)]

    def rank(p: Path) -> tuple[int, str]:
        top = p.relative_to(moddir).parts[0]
        return (_MODULE_DIR_RANK.get(top, 3), p.as_posix())

    for p in sorted(found, key=rank, reverse=True):  # the preferred one is read last, and wins
        rel = p.relative_to(moddir).as_posix()
        try:
            mod = _parse_module(rel, p.read_bytes())
        except OSError as e:
            raise KernelError(f"{p}: cannot read ({e.strerror})") from None
        modules[mod.name] = mod
    builtin_f = moddir / "modules.builtin"
    builtin = {modname(x) for x in builtin_f.read_text().split()} if builtin_f.exists() else set()
    return KernelIndex(moddir.name, moddir, modules, builtin, local=True)


def _load(root: Path, idx: Path) -> KernelIndex:
    data = json.loads(idx.read_text())
    mods = {k: Module(**v) for k, v in data["modules"].items()}
    kidx = KernelIndex(str(data["kver"]), root, mods, set(data["builtin"]), dict(data["digests"]))
    if not (root / "vmlinuz").exists() or not (root / "modules").is_dir():
        raise KernelError("files missing")
    return kidx


def select(kidx: KernelIndex, patterns: tuple[str, ...], names: tuple[str, ...] = (),
           exclude: tuple[str, ...] = (), why: dict[str, tuple[str, str]] | None = None,
           named_as: str = "named in add_modules") -> list[Module]:
    """Modules whose path under kernel/ matches a pattern, or named, closed under
    dependencies; why (if given) gets the reason for each: the pattern, named_as, or the
    module whose dependency it is."""
    reasons: dict[str, tuple[str, str]] = {}
    for n in names:
        reasons.setdefault(n.replace("-", "_"), ("", named_as))
    want = set(reasons)
    rx = _path_regex(patterns) if patterns else None
    for m in kidx.modules.values():
        if rx is not None and rx.match(m.path):
            want.add(m.name)
            if why is not None and m.name not in reasons:  # which pattern: only when asked
                pat = next(p for p in patterns if fnmatch.fnmatchcase(m.path, "kernel/" + p))
                reasons[m.name] = ("", f"generic set: kernel/{pat}")
    unknown = sorted(n for n in want if n not in kidx.modules and n not in kidx.builtin)
    if unknown:
        raise KernelError(f"unknown kernel module(s) for {kidx.kver}: {', '.join(unknown)}")
    excl = {n.replace("-", "_") for n in exclude}
    todo = sorted(want - excl)
    chosen: set[str] = set()
    while todo:
        n = todo.pop()
        if n in chosen or n in kidx.builtin or n not in kidx.modules:
            continue
        chosen.add(n)
        m = kidx.modules[n]
        for kind, deps in (("depends", m.depends), ("softdep pre", m.softdep_pre),
                           ("softdep post", m.softdep_post)):
            for d in deps:
                if d not in excl:
                    todo.append(d)
                    reasons.setdefault(d, (n, kind))
    if why is not None:
        why.update({n: reasons[n] for n in sorted(chosen)})
    return sorted((kidx.modules[n] for n in chosen), key=lambda m: m.path)


def install(tree: Tree, kidx: KernelIndex, mods: list[Module],
            plain: Callable[[Module], bool] = lambda m: True) -> None:
    """Put the modules into usr/lib/modules/KVER, those `plain` picks decompressed, the others
    as shipped, and generate the indexes with depmod. The result for a given kernel and module
    set is kept in the kernel's cache directory, so a warm build neither decompresses modules
    nor runs depmod again."""
    import hashlib
    import pickle

    import zstandard

    from rdforge.sources.cache import drop_derived, read_derived, write_derived

    base = f"usr/lib/modules/{kidx.kver}"
    decompress = {m.path: plain(m) for m in mods}
    depmod = depmod_for(tree)
    if kidx.local:  # an installed kernel's directory is not a cache: never write into it
        _install_fresh(tree, kidx, mods, decompress, depmod)
        return
    key = hashlib.sha256(json.dumps([sorted(decompress.items()), depmod.identity]).encode()
                         ).hexdigest()
    stored = kidx.root / "installed" / f"{key[:32]}.pickle.zst"
    blob = read_derived(stored)
    if blob is not None:
        try:
            files: dict[str, bytes] = pickle.loads(zstandard.ZstdDecompressor().decompress(blob))
            for rel, data in sorted(files.items()):
                tree.add(f"{base}/{rel}", Entry(FILE, 0o644, data=data, package="kernel"))
            return
        except Exception:  # verified bytes that do not decode: install afresh
            drop_derived(stored, "it does not decode")
    staged = Tree()
    _install_fresh(staged, kidx, mods, decompress, depmod)
    files = {p[len(base) + 1:]: e.data for p, e in staged.entries.items() if e.kind == FILE}
    raw = pickle.dumps(files, protocol=pickle.HIGHEST_PROTOCOL)
    write_derived(stored, zstandard.ZstdCompressor(level=1).compress(raw))
    del raw
    for rel, data in sorted(files.items()):
        tree.add(f"{base}/{rel}", Entry(FILE, 0o644, data=data, package="kernel"))


def _install_fresh(tree: Tree, kidx: KernelIndex, mods: list[Module],
                   decompress: dict[str, bool], depmod: Depmod) -> None:
    base = f"usr/lib/modules/{kidx.kver}"
    with tempfile.TemporaryDirectory(prefix="rdforge-depmod-") as tmp:
        mdir = Path(tmp, "lib/modules", kidx.kver)
        mdir.mkdir(parents=True)
        for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
            if (kidx.moddir / name).exists():
                content = kidx.read(f"modules/{name}")
                (mdir / name).write_bytes(content)
                tree.add(f"{base}/{name}", Entry(FILE, 0o644, data=content, package="kernel"))
        for m in mods:
            data = kidx.read(f"modules/{m.path}")
            path = m.path
            if decompress[m.path]:
                data = _read_ko(data)
                path = re.sub(r"\.ko\.\w+$", ".ko", path)
            dest = mdir / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            tree.add(f"{base}/{path}", Entry(FILE, 0o644, data=data, package="kernel"))
        tool = Path(tmp, "depmod-tool")
        r = subprocess.run([*depmod.command(tool), "-b", tmp, kidx.kver], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise KernelError(f"depmod failed: {r.stderr.strip().splitlines()[-1:]}")
        for f in sorted(mdir.glob("modules.*")):
            if f.name not in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
                tree.add(f"{base}/{f.name}", Entry(FILE, 0o644, data=f.read_bytes(),
                                                   package="kernel"))


def host_modules(kidx: KernelIndex, sys_root: Path = Path("/sys"),
                 proc_root: Path = Path("/proc")) -> tuple[set[str], list[str]]:
    """The modules this machine needs: those loaded now (/proc/modules), those whose aliases
    match a device's modalias under /sys/devices, and the root file system's. Returns the
    names found in the kernel index and the sources that could be read."""
    names: set[str] = set()
    sources: list[str] = []
    try:
        loaded = (proc_root / "modules").read_text().splitlines()
        names |= {line.split()[0] for line in loaded if line.split()}
        sources.append(str(proc_root / "modules"))
    except OSError:
        pass
    modaliases: set[str] = set()
    for f in (sys_root / "devices").rglob("modalias"):
        try:
            modaliases.add(f.read_text().strip())
        except OSError:
            continue
    if modaliases:
        sources.append(f"{len(modaliases)} device modaliases in {sys_root}/devices")
        by_bus: dict[str, list[tuple[re.Pattern[str], str]]] = {}
        for m in kidx.modules.values():
            for a in m.aliases:
                bus = a.split(":", 1)[0]
                if "*" in bus or "?" in bus or "[" in bus:
                    bus = ""
                by_bus.setdefault(bus, []).append((re.compile(fnmatch.translate(a)), m.name))
        for ma in sorted(modaliases):
            bus = ma.split(":", 1)[0]
            for rx, name in by_bus.get(bus, []) + by_bus.get("", []):
                if rx.match(ma):
                    names.add(name)
    try:
        for line in (proc_root / "self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[1] == "/":
                names.add(parts[2])
                sources.append(f"root file system type {parts[2]}")
    except OSError:
        pass
    if (sys_root / "firmware/efi").is_dir():
        names.add("efivarfs")  # what systemd reads EFI variables through (see GENERIC_MODULES)
        sources.append("UEFI firmware")
    return {n.replace("-", "_") for n in names} & set(kidx.modules), sources
