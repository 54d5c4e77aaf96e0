"""Early CPU microcode: the uncompressed cpio the kernel's early loader reads before anything
else, with kernel/x86/microcode/AuthenticAMD.bin and GenuineIntel.bin.

The files come from Debian's amd64-microcode and intel-microcode packages (non-free-firmware),
or from an installed system's /usr/lib/firmware. `all` takes every vendor's every file, as a
generic vendor image needs; `host` takes the running CPU's: its vendor, and of Intel's the one
file for its family-model-stepping, of AMD's the one for its family. The early loader scans
the concatenation for a patch matching the CPU (AMD's containers and Intel's blobs are both
made to be concatenated); initramfs-tools' hooks and dracut concatenate in the same order.
"""

from __future__ import annotations

import io
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rdforge.errors import FormatError, RdforgeError
from rdforge.formats import cpio

if TYPE_CHECKING:
    from rdforge.config import Config

PACKAGES = {"AuthenticAMD": "amd64-microcode", "GenuineIntel": "intel-microcode"}
FIRMWARE_DIRS = {"AuthenticAMD": "usr/lib/firmware/amd-ucode",
                 "GenuineIntel": "usr/lib/firmware/intel-ucode"}
EARLY_DIR = "kernel/x86/microcode"
MODES = ("none", "all", "host")


class MicrocodeError(RdforgeError):
    pass


@dataclass(frozen=True)
class Cpu:
    vendor: str  # AuthenticAMD, GenuineIntel, ...
    family: int
    model: int
    stepping: int


def host_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> Cpu:
    """The first processor of /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError as e:
        raise MicrocodeError(f"{cpuinfo}: cannot read ({e.strerror}); use --microcode all") from None
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        k, sep, v = line.partition(":")
        if sep:
            fields.setdefault(k.strip(), v.strip())
    try:
        return Cpu(fields["vendor_id"], int(fields["cpu family"]), int(fields["model"]),
                   int(fields.get("stepping", "0")))
    except (KeyError, ValueError):
        raise MicrocodeError(f"{cpuinfo}: names no x86 vendor, family and model; "
                             "use --microcode all") from None


def wanted_files(vendor: str, names: list[str], cpu: Cpu | None) -> list[str]:
    """Of one vendor's microcode file names, those the image carries, in loading order."""
    names = sorted(names)  # byte order, as the peers' hooks sort (LC_ALL=C)
    if cpu is None:
        return names
    if vendor == "GenuineIntel":
        want = f"{cpu.family:02x}-{cpu.model:02x}-{cpu.stepping:02x}"
        return [n for n in names if n == want]
    if vendor == "AuthenticAMD":
        # Family 15h and later have a file each; older ones share microcode_amd.bin.
        want = f"microcode_amd_fam{cpu.family:02x}h.bin" if cpu.family >= 0x15 else "microcode_amd.bin"
        return [n for n in names if n == want]
    return []


def blobs(files: dict[str, bytes], cpu: Cpu | None) -> dict[str, bytes]:
    """vendor -> the concatenated microcode, from a tree's files (path -> content)."""
    out: dict[str, bytes] = {}
    for vendor, d in FIRMWARE_DIRS.items():
        if cpu is not None and cpu.vendor != vendor:
            continue
        mine = {p[len(d) + 1:]: data for p, data in files.items()
                if p.startswith(d + "/") and "/" not in p[len(d) + 1:]}
        # Debian's intel-microcode also ships *.initramfs helper notes; microcode files only
        chosen = [n for n in wanted_files(vendor, list(mine), cpu) if not n.startswith(".")]
        data = b"".join(mine[n] for n in chosen)
        if data:
            out[vendor] = data
    return out


def early_cpio(vendor_blobs: dict[str, bytes], mtime: int) -> bytes:
    """The early cpio: directories, then one file per vendor; newc, uncompressed, owned by
    root, every time set to mtime."""
    if not vendor_blobs:
        return b""
    entries = [cpio.CpioEntry("kernel", stat.S_IFDIR | 0o755, mtime=mtime),
               cpio.CpioEntry("kernel/x86", stat.S_IFDIR | 0o755, mtime=mtime),
               cpio.CpioEntry(EARLY_DIR, stat.S_IFDIR | 0o755, mtime=mtime)]
    for vendor in sorted(vendor_blobs):
        entries.append(cpio.CpioEntry(f"{EARLY_DIR}/{vendor}.bin", stat.S_IFREG | 0o644,
                                      mtime=mtime, data=vendor_blobs[vendor]))
    out = io.BytesIO()
    cpio.write(out, entries)
    return out.getvalue()


def _installed_paths(root: Path) -> dict[str, Path]:
    """An installed system's microcode files: tree path -> where they are (merged /usr or
    not)."""
    out: dict[str, Path] = {}
    for d in FIRMWARE_DIRS.values():
        for base in (root / d, root / d.removeprefix("usr/")):
            if base.is_dir():
                out.update({f"{d}/{f.name}": f for f in sorted(base.iterdir()) if f.is_file()})
                break
    return out


def installed_files(root: Path = Path("/")) -> dict[str, bytes]:
    """An installed system's microcode files (what its microcode packages put there)."""
    return {rel: f.read_bytes() for rel, f in _installed_paths(root).items()}


def split_early(image: bytes) -> tuple[bytes, bytes]:
    """An initrd's leading uncompressed cpio holding kernel/x86/microcode, and the rest."""
    if not image.startswith(b"070701"):
        return b"", image
    try:
        entries, end = cpio.read(image)
    except FormatError:  # not an early cpio: leave the image whole
        return b"", image
    if not any(e.name.startswith(EARLY_DIR + "/") for e in entries):
        return b"", image
    while end < len(image) and image[end] == 0:  # padding between the archives
        end += 1
    return image[:end], image[end:]


def build_microcode(cfg: Config, host: bool, installed: Path | None) -> tuple[bytes, dict[str, object]]:
    """The early cpio alone, from the archive's microcode packages (the lock's with
    --locked) or from an installed system: for a boot loader entry's first initrd,
    kernel-install's staging area or a UKI's .ucode section."""
    from rdforge.outputs.initrd import Builder, microcode_index_config, source_date_epoch
    from rdforge.progress import Progress

    cpu = host_cpu() if host else None
    if installed is not None:
        files = installed_files(installed)
        if not files:
            raise MicrocodeError(f"{installed}: no microcode under usr/lib/firmware/amd-ucode or "
                                 "intel-ucode (are amd64-microcode or intel-microcode installed?)")
        found = blobs(files, cpu)
        if not found:
            raise MicrocodeError(f"{installed}: no microcode for "
                                 + ("this CPU" if cpu else "any CPU"))
        newest = max(int(p.stat().st_mtime) for p in _installed_paths(installed).values())
        mtime = source_date_epoch(newest)
        early = early_cpio(found, mtime)
        return early, {"source": str(installed), "size": len(early),
                       "vendors": {v: len(b) for v, b in sorted(found.items())}}
    import dataclasses

    b = Builder(dataclasses.replace(cfg, microcode="host" if host else "all"), Progress(False))
    src = None
    if cfg.locked:
        from rdforge.outputs.initrd import lock_path
        from rdforge.sources import lock as lockfile

        b.lock = lockfile.read(lock_path(cfg))
    else:
        from rdforge.sources.plan import AptBackend

        src = AptBackend(microcode_index_config(cfg))
    return b.early_microcode(b.microcode_packages(src), None)

