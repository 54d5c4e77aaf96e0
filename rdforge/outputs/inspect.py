"""`rdforge inspect`: what an initrd holds (any initrd, also a peer's) and the static check."""

from __future__ import annotations

import stat
from pathlib import Path

from rdforge.errors import FormatError
from rdforge.formats import compress, cpio
from rdforge.tree import check
from rdforge.tree.model import CHAR, DIR, FILE, SYMLINK, Entry, Tree

MAX_IMAGE = 2 << 30


def read_initrd(path: Path) -> tuple[Tree, list[dict[str, object]]]:
    """All segments of an initrd (uncompressed early cpio, then compressed main) as one tree."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{path}: not a regular file (an image is one)")
        if st.st_size > MAX_IMAGE:
            raise FormatError(f"{path}: {st.st_size >> 20} MiB is larger than any initrd "
                              f"({MAX_IMAGE >> 20} MiB at most)")
        buf = path.read_bytes()
    except OSError as err:
        raise FormatError(f"{path}: {err.strerror}") from None
    tree = Tree()
    segs: list[dict[str, object]] = []
    for off, seg in cpio.segments(buf):
        algo = compress.detect(seg)
        raw = compress.decompress(seg) if algo != "none" else seg
        pos = 0
        while pos < len(raw) and raw[pos:pos + 5] == b"07070":
            entries, pos = cpio.read(raw, pos)
            for e in entries:
                if not e.name:
                    continue
                kind = (DIR if stat.S_ISDIR(e.mode) else SYMLINK if stat.S_ISLNK(e.mode) else
                        CHAR if stat.S_ISCHR(e.mode) else FILE)
                tree.entries[e.name] = Entry(kind, e.mode & 0o7777, e.uid, e.gid,
                                             data=e.data if kind == FILE else b"",
                                             target=e.data.decode("utf-8", "surrogateescape")
                                             if kind == SYMLINK else "",
                                             rdev=e.rdev)
            while pos < len(raw) and raw[pos] == 0:
                pos += 1
            segs.append({"offset": off, "compression": algo, "size": len(seg),
                         "entries": len(entries)})
    if not segs:
        raise FormatError(f"{path}: no cpio archive in it (not an initrd)")
    return tree, segs


def inspect_pe(path: Path) -> dict[str, object]:
    """A UKI or addon: sections with sizes and hashes, Authenticode signers, the embedded
    command line and kernel version, and for a UKI the PCR 11 values it will produce."""
    from rdforge.formats import pcrsig, pe

    data = path.read_bytes()
    info = pe.describe(data)
    img = pe.PE.parse(data)
    lines = [f"{path}: PE image, {len(data)} bytes"]
    for s in info["sections"]:  # type: ignore[attr-defined]
        lines.append(f"  {s['name']:<9} {s['size']:>11}  sha256 {s['sha256'][:16]}…")
    for name in (".cmdline", ".uname"):
        sec = img.section(name)
        if sec is not None:
            text = sec.data(data).rstrip(b"\0").decode(errors="replace")
            info[name.lstrip(".")] = text
            lines.append(f"  {name}: {text}")
    signers = info["signers"]
    lines.append("  signed by: " + (", ".join(signers) if signers else "nobody (unsigned)"))  # type: ignore[arg-type]
    if img.section(".linux") is not None:
        # What systemd-stub and systemd-pcrphase will have measured, phase by phase.
        pcr11 = {phase: v.hex() for phase, v in pcrsig.predict(pcrsig.measured_sections(data)).items()}
        info["pcr11_sha256"] = pcr11
        lines += [f"  PCR 11 after {phase}: {value}" for phase, value in pcr11.items()]
        lines.append("  PCR 11 policies: " + ("signed (.pcrsig)" if img.section(".pcrsig")
                                              else "not signed"))
    info["summary_lines"] = lines
    info["path"] = str(path)
    return info


def inspect_image(path: Path, check: bool = False) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            if f.read(2) == b"MZ":
                return inspect_pe(path)
    except OSError as err:
        raise FormatError(f"{path}: {err.strerror}") from None
    tree, segs = read_initrd(path)
    files = [(p, e) for p, e in tree.entries.items() if e.kind == FILE]
    total = sum(len(e.data) for _p, e in files)
    mods = sorted(p for p, _e in files if ".ko" in p.rsplit("/", 1)[-1])
    by_top: dict[str, int] = {}
    for p, e in files:
        top = "/".join(p.split("/")[:3])
        by_top[top] = by_top.get(top, 0) + len(e.data)
    biggest = sorted(by_top.items(), key=lambda t: -t[1])[:15]
    report: dict[str, object] = {
        "path": str(path), "size": path.stat().st_size, "segments": segs,
        "entries": len(tree.entries), "files": len(files), "file_bytes": total,
        "modules": len(mods), "largest_directories": dict(biggest),
    }
    lines = [f"{path}: {path.stat().st_size / 1e6:.1f} MB, {len(segs)} segment(s), "
             f"{len(tree.entries)} entries, {total / 1e6:.1f} MB of files, {len(mods)} modules"]
    lines += [f"  {b / 1e6:7.2f} MB  /{d}" for d, b in biggest]
    if check:
        rep = _check(tree)
        report["check"] = {"problems": rep.problems, "warnings": rep.warnings,
                           "elf_files": rep.elf_files, "modules": rep.modules}
        lines.append("check: " + ("OK" if rep.ok else f"{len(rep.problems)} problem(s)"))
        lines += [f"  problem: {p}" for p in rep.problems] + [f"  warning: {w}" for w in rep.warnings]
    report["summary_lines"] = lines
    return report


def _check(tree: Tree) -> check.CheckReport:
    return check.check_tree(tree)
