"""`rdforge sysext`: a signed dm-verity system extension for an rdforge initrd.

packages (resolved against the base image's release, minus what the base already has)
-> tree limited to /usr and /opt -> extension-release and enabled units -> erofs or squashfs
-> DDI (GPT + verity + verity-sig)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rdforge.config import Config
from rdforge.errors import SysextError
from rdforge.formats import ddi
from rdforge.fsutil import read_local_file, write_atomic
from rdforge.keys import SigningKey, load_signing_key
from rdforge.progress import Progress
from rdforge.sources.archive import Package
from rdforge.sources.plan import load_universe, resolve_set
from rdforge.tree.model import DIR, FILE, SYMLINK, Entry, Tree
from rdforge.tree.prune import DEFAULT_PRUNE, Pruner
from rdforge.tree.unpack import new_tree, unpack_deb

UNIT_DIR = "usr/lib/systemd/system"
# Units from the extension are started by systemd-sysext.service once it merged: it reloads
# the manager, and a unit that is already part of the boot transaction does not pick up new
# Wants= on reload, but Upholds= is re-evaluated when the service becomes active. They are
# ordered before initrd.target, as units initrd.target wants would be: their start jobs come
# before the jobs of sysinit.target and the targets after it run, so the initrd is not left
# (initrd-cleanup isolates) while a oneshot of the extension still runs. (Upheld by
# sysinit.target instead, they came only after initrd.target was reached, racing the isolation.)
ENABLE_VIA = "systemd-sysext.service.upholds"
ENABLE_ORDER = b"[Unit]\nBefore=initrd.target\n"
# Packages that serve only maintainer scripts (which a sysext never runs): dependencies on
# them count as satisfied unless --keep-packages names them.
MAINTSCRIPT_ONLY = ("adduser", "base-passwd", "debconf", "init-system-helpers", "login.defs",
                    "lsb-base", "passwd", "perl-base", "procps", "runit-helper", "sensible-utils",
                    "sysvinit-utils", "ucf")


@dataclass
class SysextOptions:
    name: str
    base: Path
    output: Path
    packages: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # image path -> local file
    enable: list[str] = field(default_factory=list)  # units to start in the initrd
    remove_packages: list[str] = field(default_factory=lambda: list(MAINTSCRIPT_ONLY))
    from_base: list[str] = field(default_factory=list)  # globs of files the base pruned
    key: Path | None = None
    cert: Path | None = None
    fs: str = "erofs"
    offline: bool = False
    source_date_epoch: int = -1
    version: str = ""


@dataclass
class SysextResult:
    output: Path
    size: int
    root_hash: str
    signed: bool
    packages: list[str]
    files: int
    dropped: list[str]
    manifest: dict[str, object]


@dataclass(frozen=True)
class BaseImage:
    release: str
    arch: str
    packages: frozenset[str]
    package_sha256: dict[str, str]
    os_release: dict[str, str]
    source_date_epoch: int


def base_info(base: Path) -> BaseImage:
    """Release, architecture, packages and os-release fields of the base initrd, from the
    manifest `rdforge build` wrote beside it (os-release from the image if the manifest
    predates that field)."""
    mpath = base.with_name(base.name + ".manifest.json")
    if not base.exists():
        raise SysextError(f"base image {base}: no such file")
    if not mpath.exists():
        raise SysextError(f"base image {base}: no {mpath.name} beside it (was it built by rdforge?)")
    try:
        m = json.loads(mpath.read_text())
        release, arch = str(m["release"]), str(m["arch"])
        pkgs = frozenset(str(x["name"]) for x in m["packages"])
        shas = {str(x["name"]): str(x["sha256"]) for x in m["packages"]}
        epoch = int(m.get("image", {}).get("source_date_epoch", 0))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SysextError(f"{mpath}: unreadable manifest ({err})") from None
    fields: dict[str, str] = {str(k): str(v) for k, v in (m.get("os_release") or {}).items()}
    if not fields:
        from rdforge.outputs.inspect import read_initrd

        tree, _ = read_initrd(base)
        rel = tree.get("usr/lib/initrd-release")
        if rel is not None and rel.kind == FILE:
            for line in rel.data.decode().splitlines():
                k, sep, v = line.partition("=")
                if sep:
                    fields[k] = shlex.split(v)[0] if v.strip() else ""
    return BaseImage(release, arch, pkgs, shas, fields, epoch)


def _confine(tree: Tree) -> tuple[Tree, list[str]]:
    """Keep /usr and /opt. Units under etc/systemd/system move to usr/lib/systemd/system;
    everything else outside /usr and /opt is dropped and reported."""
    out = Tree()
    dropped: list[str] = []
    for path in sorted(tree.entries):
        e = tree.entries[path]
        if path.startswith("etc/systemd/system/"):
            path = UNIT_DIR + path[len("etc/systemd/system"):]
        top = path.split("/", 1)[0]
        if top not in ("usr", "opt"):
            if e.kind != DIR and path not in ("bin", "sbin", "lib", "lib64"):
                dropped.append(path)
            continue
        if e.kind == DIR:
            out.mkdirs(path, e.package)
        else:
            out.entries[path] = e
            out.mkdirs(path.rsplit("/", 1)[0], e.package)
    return out, dropped


def _materialize(tree: Tree, root: Path) -> None:
    links: dict[int, Path] = {}
    for path in sorted(tree.entries):
        e = tree.entries[path]
        dest = root / path
        if e.kind == DIR:
            dest.mkdir(parents=True, exist_ok=True)
            os.chmod(dest, e.mode)
        elif e.kind == SYMLINK:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(e.target, dest)
        elif e.kind == FILE:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if e.link_id and e.link_id in links:
                os.link(links[e.link_id], dest)
                continue
            dest.write_bytes(e.data)
            os.chmod(dest, e.mode)
            if e.link_id:
                links[e.link_id] = dest
        else:
            raise SysextError(f"{path}: device nodes do not belong in a system extension")


def make_fs(tree: Tree, out: Path, fs: str, epoch: int, seed: bytes) -> None:
    fs_uuid = ddi.derived_uuid(seed, "file system")
    with tempfile.TemporaryDirectory(prefix="rdforge-sysext-") as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        os.chmod(root, 0o755)  # not the umask's choice: the image's / must not vary
        _materialize(tree, root)
        if fs == "erofs":
            cmd = ["mkfs.erofs", "--quiet", "-zlz4hc", f"-T{epoch}", f"-U{fs_uuid}", "--all-root",
                   "-x-1", str(out), str(root)]
        elif fs == "squashfs":
            cmd = ["mksquashfs", str(root), str(out), "-noappend", "-quiet", "-no-progress",
                   "-all-root", "-comp", "xz", "-mkfs-time", str(epoch), "-all-time", str(epoch),
                   "-no-xattrs", "-processors", "1"]
        else:
            raise SysextError(f"unknown sysext file system {fs!r} (erofs or squashfs)")
        if not shutil.which(cmd[0]):
            pkg = "erofs-utils" if fs == "erofs" else "squashfs-tools"
            raise SysextError(f"{cmd[0]} is not installed (apt-get install {pkg})")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SysextError(f"{cmd[0]} failed: {(r.stderr or r.stdout).strip()[-500:]}")


def extension_release(name: str, base_osrel: dict[str, str], arch: str, version: str) -> bytes:
    fields = {"ID": base_osrel.get("ID", "_any"), "ARCHITECTURE": arch, "SYSEXT_SCOPE": "initrd",
              "EXTENSION_RELOAD_MANAGER": "1"}
    if base_osrel.get("VERSION_ID"):
        fields["VERSION_ID"] = base_osrel["VERSION_ID"]
    if version:
        fields["SYSEXT_VERSION_ID"] = version
    fields["SYSEXT_ID"] = name
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in fields.items()).encode()


def _restore_from_base(tree: Tree, base: BaseImage, candidates: dict[str, Package],
                       globs: list[str], offline: bool, packages: set[str] | None = None) -> int:
    """Files of the base image's own packages (all, or `packages`) that its build pruned (a
    daemon the initrd does not need by default, like systemd-networkd), at the versions the
    base image has."""
    from rdforge.sources.fetch import fetch_all

    pkgs = []
    for name, sha in sorted(base.package_sha256.items()):
        if packages is not None and name not in packages:
            continue
        pkg = candidates.get(name)
        if pkg is None or pkg.sha256 != sha:
            raise SysextError(f"--from-base: the archive no longer has {name} as the base image "
                              "has it (rebuild the base or use its lock file's cache)")
        pkgs.append(pkg)
    before = len(tree.entries)
    only = Pruner(("*",), tuple(globs))  # drops everything but the requested globs
    for pkg, path in zip(pkgs, fetch_all(pkgs, offline), strict=True):
        unpack_deb(tree, path, pkg.name, only)
    return len(tree.entries) - before


def _complete_libraries(tree: Tree, o: SysextOptions, base: BaseImage,
                        candidates: dict[str, Package] | None) -> list[str]:
    """Prove that every program of the extension finds its libraries in the extension or the
    base image. A library whose package the base has but whose file its build dropped as
    unused is brought back from that package. Returns the sonames restored."""
    from rdforge.outputs.inspect import read_initrd
    from rdforge.sources.plan import package_for_soname
    from rdforge.sources.resolve import Universe
    from rdforge.tree.check import missing_libraries

    base_tree, _ = read_initrd(o.base)
    restored: list[str] = []
    u = Universe(list(candidates.values()), base.arch) if candidates is not None else None
    for _round in range(4):
        missing = missing_libraries(_merged(base_tree, tree))
        if not missing:
            return restored
        if u is None or candidates is None:
            break
        globs, owners = [], set()
        for soname in sorted(missing):
            name = package_for_soname(u, soname)
            if name in base.packages:
                globs.append(f"usr/lib/*/{soname.split('.so')[0]}.so*")
                owners.add(name)
                restored.append(soname)
        if not globs:
            break
        _restore_from_base(tree, base, candidates, globs, o.offline, owners)
    missing = missing_libraries(_merged(base_tree, tree))
    if missing:
        soname, users = sorted(missing.items())[0]
        raise SysextError(f"{users[0]} needs {soname}, which neither the extension nor the base "
                          f"image has (add its package with --packages)"
                          + (f"; {len(missing) - 1} more missing" if len(missing) > 1 else ""))
    return restored


def _merged(base_tree: Tree, tree: Tree) -> Tree:
    merged = Tree()
    merged.entries = {**base_tree.entries, **tree.entries}
    return merged


def build_sysext(o: SysextOptions, progress: Progress | None = None) -> SysextResult:
    p = progress or Progress(False)
    if not o.name or "/" in o.name or o.name.startswith("."):
        raise SysextError(f"invalid extension name {o.name!r}")
    signer: SigningKey | None = None
    if o.key or o.cert:
        if not (o.key and o.cert):
            raise SysextError("signing needs both --key and --cert")
        signer = load_signing_key(o.key, o.cert)
    base = base_info(o.base)
    release, arch = base.release, base.arch
    dps_arch = ddi.DEB_TO_DPS_ARCH.get(arch)
    if dps_arch is None:
        raise SysextError(f"no DDI partition types for architecture {arch}")
    base_pkgs = set(base.packages)
    tree = new_tree()
    pkgs = []
    cfg = Config(release=release, arch=arch, offline=o.offline,
                 remove_packages=sorted(base_pkgs | set(Config().remove_packages)
                                        | set(o.remove_packages)))
    src = None
    if o.packages or o.from_base:
        p.phase("index", f"{release}/{arch}")
        src = load_universe(cfg)
    if o.from_base:
        assert src is not None
        p.phase("from base", " ".join(o.from_base))
        if not _restore_from_base(tree, base, src.universe.candidates, o.from_base, o.offline):
            raise SysextError(f"--from-base {' '.join(o.from_base)}: matches no file of the "
                              "base image's packages")
    if o.packages:
        assert src is not None
        p.phase("resolve", " ".join(o.packages))
        already = sorted(set(o.packages) & base_pkgs)
        if already:
            raise SysextError(f"already in the base image: {', '.join(already)}")
        pkgs = resolve_set(src.universe, cfg, o.packages)
        p.phase("fetch+unpack", f"{len(pkgs)} packages not in the base image")
        from rdforge.sources.fetch import fetch_all

        pruner = Pruner(DEFAULT_PRUNE, ())
        for pkg, path in zip(pkgs, fetch_all(pkgs, o.offline), strict=True):
            unpack_deb(tree, path, pkg.name, pruner)
    for dest, src_file in sorted(o.files.items()):
        data, mode = read_local_file(Path(src_file), "extra file")
        tree.add(dest.lstrip("/"), Entry(FILE, mode, data=data, package="config"))
    tree, dropped = _confine(tree)
    p.phase("check", "libraries of the extension's programs")
    restored = _complete_libraries(tree, o, base, src.universe.candidates if src else None)
    if restored:
        tree, _ = _confine(tree)
    for unit in o.enable:
        if tree.get(f"{UNIT_DIR}/{unit}") is None:
            raise SysextError(f"unit {unit} is not in the extension (add it with --file)")
        tree.add_symlink(f"{UNIT_DIR}/{ENABLE_VIA}/{unit}", f"../{unit}")
        tree.add_file(f"{UNIT_DIR}/{unit}.d/10-rdforge-initrd.conf", ENABLE_ORDER)
    tree.add_file(f"usr/lib/extension-release.d/extension-release.{o.name}",
                  extension_release(o.name, base.os_release, dps_arch, o.version))
    nfiles = sum(1 for e in tree.entries.values() if e.kind == FILE)
    epoch = o.source_date_epoch
    if epoch < 0:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", base.source_date_epoch))
    seed = hashlib.sha256(json.dumps(
        [o.name, sorted((k, v.kind, v.mode, v.target, hashlib.sha256(v.data).hexdigest())
                        for k, v in tree.entries.items())]).encode()).digest()
    p.phase("file system", f"{o.fs}, {nfiles} files")
    with tempfile.TemporaryDirectory(prefix="rdforge-ddi-") as tmp:
        fs_img = Path(tmp, "fs.img")
        make_fs(tree, fs_img, o.fs, epoch, seed)
        p.phase("ddi", "verity" + (" + signature" if signer else " (unsigned)"))
        res = ddi.make_ddi(fs_img, o.output, o.name, dps_arch, signer)
    manifest: dict[str, object] = {
        "name": o.name, "root_hash": res.root_hash, "signed": res.signed,
        "certificate_sha256": signer.fingerprint if signer else None,
        "file_system": o.fs, "base": {"path": o.base.name, "release": release, "arch": arch},
        "packages": [{"name": x.name, "version": x.version, "sha256": x.sha256} for x in pkgs],
        "partitions": res.partitions, "dropped_outside_usr": dropped,
        "libraries_from_base": restored,
        "enabled_units": o.enable,
    }
    write_atomic(o.output.with_name(o.output.name + ".manifest.json"),
                 (json.dumps(manifest, indent=1) + "\n").encode())
    p.done()
    return SysextResult(o.output, res.size, res.root_hash, res.signed, [x.name for x in pkgs],
                        nfiles, dropped, manifest)
