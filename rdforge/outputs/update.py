"""`rdforge update`: what update-initramfs does, for the kernel's own hooks.

For each kernel version, /boot/initrd.img-KVER is made, refreshed or removed. A vendor initrd
shipped at /usr/lib/modules/KVER/initrd (a distribution's signed build, the place
kernel-install's plugins look) is used as it is; otherwise rdforge builds one from the
distribution's packages with that kernel's installed modules (DKMS's included). Either way the
microcode that this machine's amd64-microcode or intel-microcode packages installed goes
before it, as their initramfs-tools hooks do. The lock and manifest of a local build live in
/var/lib/rdforge, not in /boot. Nothing is written to stdout: dpkg's hooks must not.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rdforge.config import Config
from rdforge.errors import RdforgeError
from rdforge.fsutil import write_atomic
from rdforge.outputs import microcode
from rdforge.progress import Progress
from rdforge.sources.version import compare

STATE_DIR = "var/lib/rdforge"


@dataclass
class UpdateResult:
    kver: str
    action: str  # built, vendor, removed, skipped
    path: str
    detail: str = ""


def root_dir() -> Path:
    """The system the hooks act on: / ($RDFORGE_ROOT for tests and image builders)."""
    return Path(os.environ.get("RDFORGE_ROOT") or "/")


def installed_kernels(root: Path) -> list[str]:
    """Kernel versions with both modules and a kernel image installed, oldest first."""
    mods = root / "usr/lib/modules"
    try:
        names = [p.name for p in mods.iterdir() if p.is_dir()]
    except OSError:
        return []
    have = [k for k in names if (root / f"boot/vmlinuz-{k}").exists()
            or (mods / k / "vmlinuz").exists()]
    import functools

    return sorted(have, key=functools.cmp_to_key(compare))


def initrd_path(root: Path, kver: str) -> Path:
    return root / f"boot/initrd.img-{kver}"


def update(cfg: Config, kversions: list[str], action: str, progress: Progress) -> list[UpdateResult]:
    """action: create (make it whatever is there), update (remake only existing ones; the
    default for `-k all`), delete."""
    root = root_dir()
    if kversions == ["all"]:
        kversions = installed_kernels(root)
        if action == "update":
            kversions = [k for k in kversions if initrd_path(root, k).exists()]
    out = []
    for kver in kversions:
        if "/" in kver or kver in ("", ".", ".."):
            raise RdforgeError(f"{kver!r} is not a kernel version")
        if action == "delete":
            out.append(_delete(root, kver))
            continue
        if action == "update" and not initrd_path(root, kver).exists():
            out.append(UpdateResult(kver, "skipped", str(initrd_path(root, kver)),
                                    "no initrd to update (use -c to create one)"))
            continue
        out.append(_make(cfg, root, kver, progress))
    return out


def _delete(root: Path, kver: str) -> UpdateResult:
    img = initrd_path(root, kver)
    state = root / STATE_DIR
    for p in (img, state / f"{img.name}.manifest.json", state / f"{img.name}.lock"):
        p.unlink(missing_ok=True)
    return UpdateResult(kver, "removed", str(img))


def vendor_initrd(root: Path, kver: str) -> Path:
    return root / "usr/lib/modules" / kver / "initrd"


def local_initrd(cfg: Config, root: Path, kver: str, progress: Progress) -> bytes:
    """The vendor initrd of an installed kernel, else one built with its installed modules
    (lock and manifest in the state directory); no microcode."""
    moddir = root / "usr/lib/modules" / kver
    if not moddir.is_dir():
        raise RdforgeError(f"{moddir}: kernel {kver} is not installed (no modules directory)")
    if vendor_initrd(root, kver).is_file():
        return vendor_initrd(root, kver).read_bytes()
    from rdforge.outputs.initrd import build

    name = f"initrd.img-{kver}"
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    work = state / name
    bcfg = dataclasses.replace(cfg, modules_dir=str(moddir), kernel_version=kver,
                               output=str(work), lock=str(state / f"{name}.lock"),
                               locked=False, microcode="none")
    build(bcfg, progress)
    data = work.read_bytes()
    work.unlink(missing_ok=True)  # the manifest stays in the state directory
    return data


def initrd_manifest(root: Path, kver: str) -> Path | None:
    """The manifest of what local_initrd gave: the vendor's beside its initrd, or the local
    build's in the state directory."""
    if vendor_initrd(root, kver).is_file():
        p = vendor_initrd(root, kver).with_name("initrd.manifest.json")
    else:
        p = root / STATE_DIR / f"initrd.img-{kver}.manifest.json"
    return p if p.is_file() else None


def _make(cfg: Config, root: Path, kver: str, progress: Progress) -> UpdateResult:
    img = initrd_path(root, kver)
    vendor = vendor_initrd(root, kver).is_file()
    data = local_initrd(cfg, root, kver, progress)
    ucode = installed_microcode(root)
    if microcode.split_early(data)[0]:
        ucode = b""  # it has its own
    write_atomic(img, ucode + data, mode=0o644)
    detail = f"the vendor initrd {vendor_initrd(root, kver)}" if vendor else "built here"
    return UpdateResult(kver, "vendor" if vendor else "built", str(img),
                        detail + (", this machine's microcode first" if ucode else ""))


def installed_microcode(root: Path) -> bytes:
    """This machine's CPU's microcode from the installed packages, as their own
    initramfs-tools hooks take it; nothing when none is installed or the CPU is not known."""
    files = microcode.installed_files(root)
    if not files:
        return b""
    try:
        cpu = microcode.host_cpu()
    except microcode.MicrocodeError:
        cpu = None
    found = microcode.blobs(files, cpu)
    if not found:
        return b""
    return microcode.early_cpio(found, 0)


def report(results: list[UpdateResult]) -> None:
    for r in results:
        print(f"rdforge: {r.kver}: {r.action} {r.path}" + (f" ({r.detail})" if r.detail else ""),
              file=sys.stderr)

