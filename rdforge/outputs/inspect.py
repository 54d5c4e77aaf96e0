"""`rdforge inspect`: what an initrd holds (any initrd, also a peer's, or the one inside a
UKI), the static check, a file list, one file's content, and extraction without root."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rdforge.errors import FormatError
from rdforge.formats import compress, cpio
from rdforge.tree import check
from rdforge.tree.model import CHAR, DIR, FILE, SYMLINK, Entry, Tree

MAX_IMAGE = 2 << 30


def is_ddi(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(520)[512:520] == b"EFI PART"
    except OSError as err:
        raise FormatError(f"{path}: {err.strerror}") from None


def read_tree(path: Path) -> Tree:
    """The files of any image inspect reads: an initrd, a UKI's initrd, a DDI's file system."""
    if is_ddi(path):
        from rdforge.outputs.ddi_tree import read_ddi

        return read_ddi(path)[0]
    return read_initrd(path)[0]


def read_initrd(path: Path) -> tuple[Tree, list[dict[str, object]]]:
    """All segments of an initrd (uncompressed early cpio, then compressed main) as one tree."""
    return parse_initrd(initrd_bytes(path), path)


def initrd_bytes(path: Path) -> bytes:
    """The bytes of an initrd file, or of the initrd inside a UKI."""
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
    if buf[:2] == b"MZ":  # a UKI: the initrd it carries
        from rdforge.formats import pe

        sec = pe.PE.parse(buf).section(".initrd")
        if sec is None:
            raise FormatError(f"{path}: a PE image without an .initrd section")
        buf = bytes(sec.data(buf))
    return buf


def parse_initrd(buf: bytes, path: Path) -> tuple[Tree, list[dict[str, object]]]:
    """read_initrd for bytes; a later segment's entry replaces an earlier one of the same
    name, as the kernel unpacks them."""
    tree = Tree()
    segs: list[dict[str, object]] = []
    for off, seg in cpio.segments(buf):
        algo = compress.detect(seg)
        try:
            raw = compress.decompress(seg) if algo != "none" else seg
        except FormatError as err:
            raise FormatError(f"{path}: segment at byte {off}: {err}") from None
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


def inspect_ddi(path: Path) -> dict[str, object]:
    """A system or configuration extension (or any DDI): partitions, verity, signer, and
    from its file system the extension-release and the files."""
    from rdforge.outputs.ddi_tree import extension_release, read_ddi

    tree, info = read_ddi(path)
    lines = [f"{path}: disk image (GPT), {path.stat().st_size} bytes"]
    for p in info["partitions"]:  # type: ignore[attr-defined]
        lines.append(f"  {p['role']:<24} {p['size']:>11}  {p['name']}  uuid {p['uuid']}")
    if "root_hash" in info:
        lines.append(f"  root hash: {info['root_hash']} (the data partition's: "
                     + ("matches)" if info["verity_checked"] else "not checked)"))
        lines.append("  signed by: " + ", ".join(info["signed_by"]))  # type: ignore[arg-type]
    else:
        lines.append("  signed by: nobody (no verity-sig partition)")
    files = [e for e in tree.entries.values() if e.kind == FILE]
    info["entries"], info["files"] = len(tree.entries), len(files)
    info["file_bytes"] = total = sum(len(e.data) for e in files)
    lines.append(f"  {len(tree.entries)} entries, {len(files)} files, {total / 1e6:.1f} MB of files")
    rel = extension_release(tree)
    if rel is not None:
        info["extension_release"] = {"path": rel[0], **rel[1]}
        lines.append(f"  {rel[0]}: " + " ".join(f"{k}={v}" for k, v in rel[1].items()))
    info["summary_lines"] = lines
    info["path"] = str(path)
    return info


def is_credential(head: bytes) -> bool:
    """Whether a file's first bytes are a systemd credential's, binary or base64."""
    import base64
    import binascii

    from rdforge.formats import creds

    ids = {k.bytes for k in creds.KEY_NAMES}
    try:
        return head[:16] in ids or base64.b64decode(head[:24], validate=True)[:16] in ids
    except (binascii.Error, ValueError):
        return False


def inspect_credential(path: Path) -> dict[str, object]:
    """A systemd credential: key type, PCR binding, and (null key) name and times; never
    the secret."""
    from rdforge.formats import creds

    if path.stat().st_size > 4 << 20:
        raise FormatError(f"{path}: larger than any credential (4 MiB at most)")
    info = creds.describe(path.read_bytes())
    lines = [f"{path}: systemd credential, {info['key']} key"
             + (" (base64)" if info["armored"] else "")]
    if info["name"] is not None:
        lines.append(f"  name: {info['name']}, secret: {info['secret_size']} bytes (not shown)")
    else:
        lines.append("  name: encrypted with the key (the machine's)")
    if "tpm2_pcrs" in info:
        pcrs = info["tpm2_pcrs"]
        lines.append("  sealed to PCRs: " + (", ".join(map(str, pcrs)) if pcrs else  # type: ignore[call-overload]
                                             "none (the TPM alone)"))
    if "signed_policy_pcrs" in info:
        lines.append("  unlocked by policies signed for PCRs "
                     + ", ".join(map(str, info["signed_policy_pcrs"]))  # type: ignore[call-overload]
                     + f" with the key of SHA-256 {info['pcr_public_key_sha256']}")
    info["path"] = str(path)
    info["summary_lines"] = lines
    return info


def inspect_image(path: Path, check: bool = False) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            head = f.read(520)
        if head[:2] == b"MZ":
            return inspect_pe(path)
        if head[512:520] == b"EFI PART":
            return inspect_ddi(path)
        if stat.S_ISREG(path.stat().st_mode) and is_credential(head):
            return inspect_credential(path)
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


def _kind_char(e: Entry) -> str:
    return {DIR: "d", FILE: "-", SYMLINK: "l", CHAR: "c"}[e.kind]


def list_entries(tree: Tree) -> list[dict[str, object]]:
    """Every path in archive order: type, mode, owner, size, link target or device."""
    out: list[dict[str, object]] = []
    for p, e in tree.entries.items():
        row: dict[str, object] = {"path": "/" + p, "type": _kind_char(e),
                                  "mode": f"{e.mode:04o}", "uid": e.uid, "gid": e.gid,
                                  "size": e.size}
        if e.kind == SYMLINK:
            row["target"] = e.target
        elif e.kind == CHAR:
            row["rdev"] = f"{e.rdev[0]}:{e.rdev[1]}"
        out.append(row)
    return out


def list_lines(rows: list[dict[str, object]]) -> list[str]:
    """ls -l style lines of list_entries' rows."""
    lines = []
    for r in rows:
        tail = f" -> {r['target']}" if "target" in r else f" ({r['rdev']})" if "rdev" in r else ""
        lines.append(f"{r['type']}{stat.filemode(int(str(r['mode']), 8))[1:]} "
                     f"{r['uid']:>5}:{r['gid']:<5} {r['size']:>10}  {r['path']}{tail}")
    return lines


def file_content(tree: Tree, path: str, image: Path) -> bytes:
    """One file's bytes, symbolic links followed inside the image."""
    e = tree.get(path.strip("/"))
    if e is None:
        raise FormatError(f"{image}: no {path} in it")
    if e.kind != FILE:
        raise FormatError(f"{image}: {path} is a {e.kind}, not a file")
    return e.data


def extract(tree: Tree, dest: Path, image: Path) -> dict[str, int]:
    """Unpack into dest (new or empty) without root, under the rules package unpacking
    follows: no path may leave dest (absolute or `..` names refused, nothing written through
    a link that points outside dest), device nodes are not made, set-ID bits are not kept, owners are not set.
    Directory modes are applied last, so a read-only directory still gets its files."""
    from rdforge.tree.model import check_member_name

    try:
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise FormatError(f"{dest}: not empty (extract into a new or empty directory)")
    except OSError as err:
        raise FormatError(f"{dest}: {err.strerror}") from None
    counts = {"directories": 0, "files": 0, "symlinks": 0, "devices_skipped": 0}
    dirs: list[tuple[Path, int]] = []
    root = dest.resolve()
    try:
        for name, e in tree.entries.items():
            rel = check_member_name(name, str(image))
            if not rel:
                continue
            target = root / rel
            parent = target.parent
            if not parent.resolve().is_relative_to(root):
                raise FormatError(f"{image}: /{rel} lies under a symbolic link that leaves "
                                  f"{dest}; not extracted through it")
            parent.mkdir(parents=True, exist_ok=True)
            if e.kind == DIR:
                target.mkdir(exist_ok=True)
                dirs.append((target, e.mode & 0o1777))
                counts["directories"] += 1
            elif e.kind == FILE:
                if target.is_symlink() or target.exists():
                    target.unlink()
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(e.data)
                os.chmod(target, e.mode & 0o777)
                counts["files"] += 1
            elif e.kind == SYMLINK:
                if target.is_symlink() or target.exists():
                    target.unlink()
                os.symlink(e.target, target)
                counts["symlinks"] += 1
            else:
                counts["devices_skipped"] += 1
        for d, mode in reversed(dirs):
            os.chmod(d, mode)
    except OSError as err:
        raise FormatError(f"{dest}: cannot extract ({err.strerror}: {err.filename})") from None
    return counts
