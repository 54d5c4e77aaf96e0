"""rdforge as kernel-install's initrd and UKI generator (the 50-rdforge.install plugin).

kernel-install (systemd 251 and later) runs its plugins with the kernel version and image and
a staging area; 90-loaderentry.install then writes a Boot Loader Specification entry with
`microcode*` and `initrd*` of the staging area, and 90-uki-copy.install copies `uki.efi`.
This plugin acts only where /etc/kernel/install.conf chose rdforge (`initrd_generator=rdforge`;
`uki_generator=rdforge` with `layout=uki`), and writes nothing where an initrd was given on the
command line or Debian's 55-initrd.install will link /boot/initrd.img-KVER (which rdforge's
postinst hook made).
"""

from __future__ import annotations

import configparser
import os
import shutil
import tempfile
from pathlib import Path

from rdforge.config import Config
from rdforge.errors import RdforgeError
from rdforge.fsutil import write_atomic
from rdforge.outputs import microcode
from rdforge.outputs.update import (
    initrd_manifest,
    initrd_path,
    installed_microcode,
    local_initrd,
    root_dir,
)
from rdforge.progress import Progress

EXTRA_DIR = "etc/rdforge/extra.d"  # *.raw, *.cred, *.addon.efi placed beside each UKI
EXTRA_SUFFIXES = (".raw", ".cred", ".addon.efi")


def _env(name: str) -> str:
    return os.environ.get(name, "")


def kernel_cmdline(root: Path) -> str:
    """What kernel-install itself puts in a boot entry: /etc/kernel/cmdline, else
    /usr/lib/kernel/cmdline, else this boot's command line without its boot loader's words."""
    conf = _env("KERNEL_INSTALL_CONF_ROOT")
    for f in ([Path(conf) / "cmdline"] if conf else []) + [root / "etc/kernel/cmdline",
                                                          root / "usr/lib/kernel/cmdline"]:
        if f.is_file():
            return " ".join(f.read_text().split())
    try:
        words = Path("/proc/cmdline").read_text().split()
    except OSError:
        return ""
    return " ".join(w for w in words if not w.startswith(("BOOT_IMAGE=", "initrd=")))


def signing_key(root: Path) -> tuple[Path | None, Path | None]:
    """The Secure Boot key and certificate of /etc/kernel/uki.conf ([UKI]
    SecureBootPrivateKey=, SecureBootCertificate=), the file ukify reads too."""
    conf = _env("KERNEL_INSTALL_CONF_ROOT")
    path = Path(conf) / "uki.conf" if conf else root / "etc/kernel/uki.conf"
    if not path.is_file():
        return None, None
    cp = configparser.ConfigParser(interpolation=None)
    try:
        cp.read(path)
    except configparser.Error as e:
        raise RdforgeError(f"{path}: malformed ({e.message.splitlines()[0]})") from None
    key = cp.get("UKI", "SecureBootPrivateKey", fallback="")
    cert = cp.get("UKI", "SecureBootCertificate", fallback="")
    return (Path(key) if key else None), (Path(cert) if cert else None)


def add(cfg: Config, kver: str, image: Path, initrds: list[Path], progress: Progress) -> list[str]:
    """Write into the staging area what this installation needs; returns the names written."""
    staging = Path(_env("KERNEL_INSTALL_STAGING_AREA"))
    if not staging.is_dir():
        raise RdforgeError("KERNEL_INSTALL_STAGING_AREA is not a directory: run by kernel-install")
    if _env("KERNEL_INSTALL_IMAGE_TYPE") == "uki":
        return []  # the kernel image is a UKI already
    root = root_dir()
    if _env("KERNEL_INSTALL_LAYOUT") == "uki":
        if _env("KERNEL_INSTALL_UKI_GENERATOR") != "rdforge":
            return []
        return _uki(cfg, root, kver, image, initrds, staging, progress)
    if _env("KERNEL_INSTALL_INITRD_GENERATOR") != "rdforge" or initrds:
        return []
    if initrd_path(root, kver).exists():
        return []  # Debian's 55-initrd.install links it
    written = ["initrd"]
    write_atomic(staging / "initrd", local_initrd(cfg, root, kver, progress), mode=0o644)
    ucode = installed_microcode(root)
    if ucode:
        write_atomic(staging / "microcode", ucode, mode=0o644)
        written.append("microcode")
    return written


def installed_stub(root: Path, arch: str) -> Path | None:
    """The EFI stub the system's systemd-boot-efi installed, as ukify takes it: a kernel
    installed without network needs no archive for it (else the archive's is fetched)."""
    from rdforge.outputs.uki import STUBS

    if arch not in STUBS:
        return None
    stub = root / "usr/lib/systemd/boot/efi" / STUBS[arch][0]
    return stub if stub.is_file() else None


def _uki(cfg: Config, root: Path, kver: str, image: Path, initrds: list[Path], staging: Path,
         progress: Progress) -> list[str]:
    from rdforge.outputs.uki import UkiOptions, build_uki

    written = ["uki.efi"]
    vendor_uki = root / "usr/lib/modules" / kver / "uki.efi"
    if vendor_uki.is_file():
        shutil.copyfile(vendor_uki, staging / "uki.efi")
    else:
        with tempfile.TemporaryDirectory(prefix="rdforge-uki-") as tmp:
            initrd = Path(tmp) / "initrd"
            made = initrd_path(root, kver)  # what rdforge's postinst hook made for this kernel
            manifest: Path | None
            if initrds:
                initrd.write_bytes(b"".join(p.read_bytes() for p in initrds))
                manifest = initrds[-1].with_name(initrds[-1].name + ".manifest.json")
            else:
                initrd.write_bytes(made.read_bytes() if made.is_file()
                                   else local_initrd(cfg, root, kver, progress))
                manifest = initrd_manifest(root, kver)
            if manifest is not None and manifest.is_file():  # release, os-release, kernel
                shutil.copyfile(manifest, initrd.with_name("initrd.manifest.json"))
            ucode = Path(tmp) / "microcode"
            early, rest = microcode.split_early(initrd.read_bytes())
            if early:  # its microcode goes into .ucode
                initrd.write_bytes(rest)
            else:
                early = installed_microcode(root)
            if early:
                ucode.write_bytes(early)
            key, cert = signing_key(root)
            build_uki(UkiOptions(initrd=initrd, output=staging / "uki.efi", kernel=image,
                                 kernel_version=kver, cmdline=kernel_cmdline(root), key=key,
                                 cert=cert, microcode=ucode if ucode.exists() else None,
                                 offline=cfg.offline, stub=installed_stub(root, cfg.arch)))
    extra = root / EXTRA_DIR
    files = sorted(f for f in extra.iterdir() if f.is_file() and f.name.endswith(EXTRA_SUFFIXES)
                   ) if extra.is_dir() else []
    # Newer kernel-install copies uki.efi.extra.d/ from the staging area; systemd 257's
    # 90-uki-copy.install does not, so the UKI's own extra.d on the ESP is written too.
    dests = [staging / "uki.efi.extra.d"]
    boot, token = _env("KERNEL_INSTALL_BOOT_ROOT"), _env("KERNEL_INSTALL_ENTRY_TOKEN")
    if boot and token:
        dests.append(Path(boot) / "EFI/Linux" / f"{token}-{kver}.efi.extra.d")
    for dest in dests if files else []:
        shutil.rmtree(dest, ignore_errors=True)  # the extras of an earlier install go
        dest.mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, dest / f.name)
    written += [f"uki.efi.extra.d/{f.name}" for f in files]
    return written
