"""`rdforge build`: packages -> tree -> fix-ups -> modules -> check -> cpio -> image."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rdforge.config import Config, profile
from rdforge.errors import CheckError, ConfigError, KernelError, RdforgeError
from rdforge.fsutil import discard, read_local_file, stage
from rdforge.outputs import explain, microcode
from rdforge.outputs.image import archive, one_malloc_arena, release_freed_memory
from rdforge.outputs.report import build_warnings
from rdforge.progress import Progress
from rdforge.sources import lock as lockfile
from rdforge.sources.archive import Package
from rdforge.sources.backend import Backend, checked_package, open_backend
from rdforge.sources.fetch import Fetcher
from rdforge.sources.installed import InstalledRoot
from rdforge.sources.plan import archive_sources
from rdforge.tree import check, fixups, kmods, storage
from rdforge.tree.dlopen import KEEP_SONAMES, TPM_TCTI, dlopen_wants, follow_dlopen
from rdforge.tree.host_storage import host_only
from rdforge.tree.keymap import console_keymap
from rdforge.tree.model import FILE, Entry, Tree
from rdforge.tree.prune import DEFAULT_PRUNE, Pruner, gc_libraries
from rdforge.tree.unpack import (
    ContentPolicy,
    MiB,
    Record,
    new_tree,
    package_members,
    unpack_members,
)


@dataclass
class BuildResult:
    output: Path
    size: int
    sha256: str
    packages: list[Package]
    kernel_version: str
    modules: int
    files: int
    manifest: dict[str, object] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # outputs.report: said at the end


class Builder:
    def __init__(self, cfg: Config, progress: Progress) -> None:
        self.cfg = cfg
        self.p = progress
        self.pruner = Pruner(DEFAULT_PRUNE + tuple(cfg.prune) if not cfg.hwdb else
                             tuple(x for x in DEFAULT_PRUNE if "hwdb" not in x) + tuple(cfg.prune),
                             tuple(cfg.keep))
        self.tree = new_tree()
        self.policy = ContentPolicy(cfg.max_file_size * MiB, cfg.max_unpacked_size * MiB)
        self.pkg_bytes: dict[str, int] = {}
        self.newest = 0
        self.unpacked: dict[str, Package] = {}
        self.lock: lockfile.Lock | None = None  # the lock a --locked build reads
        self.firmware_used: list[Package] = []
        self.trees: dict[str, dict[str, object]] = {}  # what each package gave, for the lock
        self.why: dict[str, tuple[str, str]] = {}  # package -> (pulled in by, rule)
        self.module_why: dict[str, tuple[str, str]] = {}
        self.firmware_for: dict[str, list[str]] = {}  # firmware path -> the modules naming it
        self.left_out: dict[str, tuple[str, str]] = {}  # path -> (the rule that left it out, by)
        # The kernel package, the largest download by far, is fetched in the background while
        # the rest is unpacked. (Indexing it there too would be faster still, but its
        # decompressor's memory would then add to the unpacking's, and peak memory with it.)
        self._kernel_pool = ThreadPoolExecutor(max_workers=1)
        self._kernel_deb: Future[Path] | None = None
        self.backend = profile(cfg.distribution).backend
        self.fetcher = Fetcher(cfg.offline, Path(cfg.deb_dir) if cfg.deb_dir else None,
                               (lambda: [cfg.mirror.rstrip("/")]) if self.backend == "rpm-md"
                               else (lambda: [s.uri for s in archive_sources(cfg)]))
        self.installed: InstalledRoot | None = None
        if cfg.installed_root:
            if not cfg.locked:
                raise ConfigError("installed_root takes the lock's packages from a root: "
                                  "give --locked (and the lock)")
            self.installed = InstalledRoot.read(Path(cfg.installed_root))

    def prefetch_kernel(self, kernel: Package | None) -> None:
        cfg = self.cfg
        if kernel is None or cfg.modules_dir or cfg.modules == "none" or self._kernel_deb \
                or self.installed is not None:
            return
        self._kernel_deb = self._kernel_pool.submit(self.fetcher.one, kernel)

    def unpack_into(self, tree: Tree, pkgs: list[Package], pruner: Pruner,
                    policy: ContentPolicy) -> list[tuple[int, int]]:
        """Each package's files into tree: from its .deb, or with installed_root from where
        dpkg installed them (checked against dpkg's records); (bytes added, newest time)."""
        if self.installed is not None:
            assert self.lock is not None
            inst, out = self.installed, []
            for p in pkgs:
                rec = self.lock.trees.get(p.name)
                if rec is None:
                    raise RdforgeError(f"{lock_path(self.cfg)}: records no files of {p.name} "
                                       "(write the lock again with this rdforge)")
                out.append(unpack_members(tree, inst.members(p, rec, policy.max_file), p.name,
                                          f"{p.name} in {inst.root}", pruner, policy))
            return out
        results = []
        for p, path in zip(pkgs, self.fetcher.all(pkgs), strict=True):
            record: list[Record] = []
            members = package_members(checked_package(p, path, self.cfg), policy.max_file)
            added, newest = unpack_members(tree, members, p.name, str(path), pruner, policy, record)
            self.trees[p.name] = {"newest": newest, "members": record}
            results.append((added, newest))
        return results

    def unpack(self, pkgs: list[Package]) -> None:
        new = [p for p in pkgs if p.name not in self.unpacked]
        for p, (added, newest) in zip(new, self.unpack_into(self.tree, new, self.pruner,
                                                            self.policy), strict=True):
            self.pkg_bytes[p.name] = added
            self.newest = max(self.newest, newest)
            self.unpacked[p.name] = p

    def packages(self) -> tuple[list[Package], Package | None, Backend | None]:
        cfg = self.cfg
        if cfg.locked:
            lock = lock_path(cfg)
            lk = lockfile.read(lock)
            if lk.backend != self.backend:
                raise RdforgeError(f"{lock}: locked from {lk.backend} sources, not {self.backend} "
                                   f"(distribution {cfg.distribution})")
            if lk.release != cfg.release or lk.arch != cfg.arch:
                raise RdforgeError(f"{lock}: locked for {lk.release}/{lk.arch}, "
                                   f"not {cfg.release}/{cfg.arch}")
            self.lock = lk
            self.why = dict(lk.why)
            self.p.phase("packages", f"{len(lk.packages)} pinned by {lock}")
            if not cfg.kernel_version or (lk.kernel and lk.kernel.name.endswith(cfg.kernel_version)):
                self.prefetch_kernel(lk.kernel)
            self.unpack(lk.packages)
            return lk.packages, lk.kernel, None
        self.p.phase("index", "reading and verifying the signed index"
                     + (f" ({cfg.mirror})" if cfg.mirror else ""))
        src = open_backend(microcode_index_config(cfg) if cfg.microcode != "none" else cfg)
        self.p.phase("resolve", " ".join(cfg.package_set))
        res = src.resolve(cfg.package_set)
        pkgs, self.why = res.packages, dict(res.why)
        kernel = None
        if not cfg.modules_dir and cfg.modules != "none":
            kernel = src.kernel()
            self.prefetch_kernel(kernel)
        self.p.phase("fetch+unpack", f"{len(pkgs)} packages")
        self.unpack(pkgs)

        def add(reasons: dict[str, str]) -> None:
            self.p.info(f"dlopen() libraries: adding {', '.join(reasons)}")
            more = src.resolve(sorted(set(cfg.package_set) | set(reasons) | set(self.unpacked)))
            for q in more.packages:
                if q.name not in self.why:
                    self.why[q.name] = ("", reasons[q.name]) if q.name in reasons \
                        else more.why[q.name]
            self.unpack(more.packages)

        follow_dlopen(self.tree, cfg.dlopen_features, src.package_for_soname,
                      lambda n: n in self.unpacked or n in cfg.remove_packages, add,
                      also_unlinked=src.links_only)
        return sorted(self.unpacked.values(), key=lambda p: p.name), kernel, src

    def kernel(self, kernel: Package | None) -> tuple[str, list[kmods.Module]]:
        cfg = self.cfg
        if cfg.modules == "none" and not cfg.modules_dir:
            return cfg.kernel_version, []
        if self.installed is not None and kernel is not None and not cfg.modules_dir:
            # the pinned kernel package as dpkg installed it: its modules, checked
            kver = kernel.name.removeprefix("linux-image-")
            n = self.installed.verify_tree(kernel, f"/usr/lib/modules/{kver}/")
            self.p.phase("kernel", f"{kernel.name} {kernel.version}: {n} files checked "
                         f"against dpkg's records in {self.installed.root}")
            kidx = kmods.index_module_dir(self.installed.module_dir(kver))
        elif cfg.modules_dir:
            kidx = kmods.index_module_dir(Path(cfg.modules_dir))
        else:
            assert kernel is not None
            if cfg.kernel_version and kernel.format != "rpm" and not kernel.name.endswith(cfg.kernel_version):
                raise KernelError(f"the lock pins {kernel.name}, not kernel {cfg.kernel_version}")
            self.p.phase("kernel", f"{kernel.name} {kernel.version}")
            self.prefetch_kernel(kernel)
            assert self._kernel_deb is not None
            kidx = kmods.index_kernel_deb(self._kernel_deb.result(), kernel.sha256)
            self._kernel_pool.shutdown(wait=False)
        if cfg.modules == "host-only":
            found, sources = kmods.host_modules(kidx)
            if not sources:
                raise KernelError("--modules host-only: neither /proc/modules nor /sys/devices "
                                  "can be read here; use the generic profile")
            self.p.info(f"host-only: {len(found)} modules from {', '.join(sources)}")
            mods = kmods.select(kidx, (), tuple(cfg.add_modules) + tuple(sorted(found)),
                                tuple(cfg.exclude_modules), self.module_why,
                                "host-only: this machine uses it")
            self.module_why.update({n: ("", "named in add_modules") for n in
                                    (m.replace("-", "_") for m in cfg.add_modules)
                                    if n in self.module_why})
            plain = kmods.plain_matcher(("*",))  # this machine's: all of them load
        else:
            mods = kmods.select(kidx, kmods.GENERIC_MODULES, tuple(cfg.add_modules),
                                tuple(cfg.exclude_modules), self.module_why)
            plain = kmods.plain_matcher(kmods.PLAIN_MODULES)
        self.p.phase("modules", f"{len(mods)} modules for {kidx.kver}")
        for name in (n.replace("-", "_") for n in cfg.exclude_modules):
            m = kidx.modules.get(name)
            if m is not None:  # as the image would have named it, stored plain or not
                for rel in {m.path, re.sub(r"\.ko\.\w+$", ".ko", m.path)}:
                    self.left_out[f"usr/lib/modules/{kidx.kver}/{rel}"] = (
                        f"module {name}: excluded by the exclude_modules setting", "kernel")
        try:
            kmods.install(self.tree, kidx, mods, plain)
        except kmods.DamagedCache as e:
            if kernel is None or cfg.modules_dir:
                raise
            # Extract the kernel package again (it is verified in the download cache).
            kmods.drop_kernel_cache(e.root, f"{e.rel} differs from what was extracted")
            assert self._kernel_deb is not None
            kidx = kmods.index_kernel_deb(self._kernel_deb.result(), kernel.sha256)
            kmods.install(self.tree, kidx, mods, plain)
        return kidx.kver, mods

    def firmware_packages(self, src: Backend | None) -> list[Package]:
        if not self.cfg.firmware_packages or self.backend != "apt":
            return []
        if src is None:  # --locked: the lock pins them
            assert self.lock is not None
            pinned = self.lock.firmware or [p for p in self.lock.packages  # a version 1 lock
                                            if p.name in self.cfg.firmware_packages]
            return self._pinned(pinned, self.cfg.firmware_packages, "firmware")
        return [self._candidate(src, name, "firmware package") for name in self.cfg.firmware_packages]

    def microcode_packages(self, src: Backend | None) -> list[Package]:
        if self.cfg.microcode == "none" or self.backend != "apt":
            return []
        vendors = sorted(microcode.PACKAGES) if self.cfg.microcode == "all" else \
            [microcode.host_cpu().vendor]
        names = [microcode.PACKAGES[v] for v in vendors if v in microcode.PACKAGES]
        if not names:
            raise microcode.MicrocodeError(f"--microcode host: no microcode package serves "
                                           f"this CPU's vendor ({vendors[0]})")
        if src is None:
            assert self.lock is not None
            return self._pinned(self.lock.microcode, names, "microcode")
        return [self._candidate(src, n, "microcode package") for n in names]

    def package_reasons(self, kernel: Package | None, micro: list[Package]) -> explain.Why:
        """Why each package is in the image: the resolver's reasons (or the lock's), and the
        settings that name the kernel, firmware and microcode packages."""
        why = {n: w for n, w in self.why.items() if n in self.unpacked}
        why |= {p.name: ("", "firmware_packages: firmware files included modules name")
                for p in self.firmware_used}
        why |= {p.name: ("", f"microcode = {self.cfg.microcode}: the early microcode")
                for p in micro}
        if kernel is not None:
            why[kernel.name] = ("", "the kernel: its modules")
        return why

    def _pinned(self, pinned: list[Package], names: list[str], what: str) -> list[Package]:
        by_name = {p.name: p for p in pinned}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise RdforgeError(f"{lock_path(self.cfg)}: pins no {what} package "
                               f"{', '.join(missing)} (build without --locked to pin it)")
        return [by_name[n] for n in names]

    @staticmethod
    def _candidate(src: Backend, name: str, what: str) -> Package:
        pkg = src.candidate(name)
        if pkg is None:
            raise RdforgeError(f"{what} {name!r} is not in the archive (is the "
                               "non-free-firmware component in --components?)")
        return pkg

    def early_microcode(self, pkgs: list[Package], mtime: int | None
                        ) -> tuple[bytes, dict[str, object]]:
        """The early cpio of the microcode packages' files (all, or this CPU's); its times
        are mtime, or else the packages' newest."""
        if not pkgs:
            return b"", {}
        files: dict[str, bytes] = {}
        keep = tuple(f"{d}/*" for d in microcode.FIRMWARE_DIRS.values())
        newest = 0
        for p in pkgs:
            t = new_tree()
            newest = max(newest, self.unpack_into(t, [p], Pruner(("*",), keep), self.policy)[0][1])
            files.update({k: e.data for k, e in t.files()})
        if mtime is None:
            mtime = source_date_epoch(newest)
        cpu = microcode.host_cpu() if self.cfg.microcode == "host" else None
        blobs = microcode.blobs(files, cpu)
        if not blobs:
            raise microcode.MicrocodeError("the microcode packages hold no microcode for "
                                           + ("this CPU" if cpu else "any CPU"))
        early = microcode.early_cpio(blobs, mtime)
        return early, {"mode": self.cfg.microcode, "size": len(early),
                       "vendors": {v: len(b) for v, b in sorted(blobs.items())},
                       "packages": {p.name: p.version for p in pkgs}}

    def firmware(self, mods: list[kmods.Module], pkgs: list[Package]) -> list[str]:
        """Copy the firmware files that included modules name from the firmware packages;
        returns the names found nowhere (listed in the manifest, never silently dropped)."""
        wanted = sorted({fw for m in mods for fw in m.firmware})
        if not pkgs:
            return wanted
        fw_tree = new_tree()
        # Whole firmware packages are far larger than what the image takes from them.
        self.unpack_into(fw_tree, pkgs, Pruner(("usr/share/*",)),
                         ContentPolicy(self.policy.max_file, 1 << 62))
        missing = []
        for name in wanted:
            for suffix in ("", ".xz", ".zst"):
                e = fw_tree.get(f"usr/lib/firmware/{name}{suffix}")
                if e is not None and e.kind == FILE:
                    self.tree.add(f"usr/lib/firmware/{name}{suffix}",
                                  Entry(FILE, 0o644, data=e.data, package=e.package))
                    self.pkg_bytes[e.package] = self.pkg_bytes.get(e.package, 0) + len(e.data)
                    self.firmware_for[f"usr/lib/firmware/{name}{suffix}"] = sorted(
                        m.name for m in mods if name in m.firmware)
                    break
            else:
                missing.append(name)
        self.firmware_used = pkgs
        return missing

    def local_files(self) -> None:
        for dest, src in sorted(self.cfg.files.items()):
            data, mode = read_local_file(Path(src), "extra file")
            self.tree.add(dest.lstrip("/"), Entry(FILE, mode, data=data, package="config: files"))
        for i, cert in enumerate(self.cfg.trust):
            try:
                data = Path(cert).read_bytes()
            except OSError as e:
                raise RdforgeError(f"certificate {cert}: {e.strerror}") from None
            if b"-----BEGIN CERTIFICATE-----" not in data:
                raise RdforgeError(f"certificate {cert}: not a PEM X.509 certificate")
            self.tree.add_file(f"etc/verity.d/rdforge-{i}-{Path(cert).stem}.crt", data,
                               package="config: trust")


def build(cfg: Config, progress: Progress | None = None) -> BuildResult:
    p = progress or Progress(False)
    one_malloc_arena()
    from rdforge.fsutil import sweep_work_dirs
    from rdforge.sources.cache import cache_root

    # What killed builds left in the cache (kernel extraction directories).
    for name in sweep_work_dirs(cache_root(), ".kernel-"):
        p.info(f"removed {cache_root() / name}, left by a build that was killed")
    b = Builder(cfg, p)
    pkgs, kernel, src = b.packages()
    firmware_pkgs = b.firmware_packages(src)
    microcode_pkgs = b.microcode_packages(src)
    # The archive's whole index (~100 MiB of records) is not needed past this point: give
    # it back before the image is assembled and compressed, which is when memory peaks.
    del src
    release_freed_memory()
    p.phase("fix-ups", "init, release files, users, ld.so.cache")
    t = b.tree
    with t.made_by("fix-up: base layout"):
        fixups.base_layout(t)
    with t.made_by("fix-up: release files"):
        os_release = fixups.release_files(t, {})
    with t.made_by("fix-up: users and groups"):
        fixups.users_and_groups(t)
    b.policy.settle_owners(t)
    with t.made_by("fix-up: system extensions"):
        fixups.enable_sysext(t, cfg.sysext_image_policy)
    b.local_files()
    with t.made_by("kernel"):
        kver, mods = b.kernel(kernel)
    release_freed_memory()  # what indexing a new kernel package used
    with t.made_by("fix-up: boot path"):
        static_nodes = fixups.static_nodes(t, kver)
        not_started = fixups.boot_path(t)
        fixups.fs_module_rule(t)
        dropins = fixups.boot_order(t)
    with t.made_by("fix-up: host-only storage"):
        keymap, storage_done = host_only(t, cfg.keymap) if cfg.modules == "host-only" \
            else (cfg.keymap, [])
    with t.made_by("fix-up: storage stacks"):
        storage_done += storage.storage_stacks(t)
    with t.made_by("fix-up: console keymap"):
        storage_done += console_keymap(t, keymap)
    missing_fw = b.firmware(mods, firmware_pkgs)
    pkgs = sorted(b.unpacked.values(), key=lambda x: x.name)
    keep = set(dlopen_wants(b.tree, cfg.dlopen_features)) | KEEP_SONAMES
    if "tpm" in cfg.dlopen_features:
        keep |= TPM_TCTI
    owners = {k: e.package for k, e in b.tree.entries.items()}
    dead_libs = gc_libraries(b.tree, fixups.LIBDIRS, keep)
    dangling = fixups.drop_dangling(b.tree)
    left_out = {k: (f"removed by the prune pattern {pat} (the keep setting brings it back)", pkg)
                for k, (pat, pkg) in b.pruner.paths.items()}
    left_out |= {k: ("an unused shared library: nothing in the image links or dlopen()s it",
                     owners.get(k, "")) for k in dead_libs}
    left_out |= {k: ("a symlink to nothing in the image", owners.get(k, "")) for k in dangling}
    left_out |= b.left_out
    with t.made_by("fix-up: ld.so.cache"):
        nlibs = fixups.ld_so_cache(b.tree)
    p.phase("check", f"{len(b.tree)} paths, {nlibs} libraries in ld.so.cache")
    rep = check.check_tree(b.tree)
    if not rep.ok:
        raise CheckError(f"the image would not work: {rep.problems[0]}"
                         + (f" (and {len(rep.problems) - 1} more)" if len(rep.problems) > 1 else ""))
    epoch = cfg.source_date_epoch
    if epoch < 0:
        epoch = source_date_epoch(b.newest)
    p.phase("archive", f"cpio + {cfg.compression}")
    release_freed_memory()
    level = cfg.compression_level if cfg.compression_level >= 0 else None
    image, cpio_size = archive(b.tree, epoch, cfg.compression, level)
    # the early cpio's times are its own packages' (so it is `rdforge microcode`'s bytes)
    early, ucode = b.early_microcode(microcode_pkgs, cfg.source_date_epoch
                                     if cfg.source_date_epoch >= 0 else None)
    image = early + image  # the kernel's early loader reads only a leading uncompressed cpio
    out = Path(cfg.output)
    sha = hashlib.sha256(image).hexdigest()
    manifest: dict[str, object] = {
        "image": {"path": out.name, "sha256": sha, "size": len(image), "cpio_size": cpio_size,
                  "compression": cfg.compression, "source_date_epoch": epoch},
        "release": cfg.release, "arch": cfg.arch, "kernel_version": kver,
        "os_release": os_release,
        "packages": [{"name": x.name, "version": x.version, "arch": x.arch, "sha256": x.sha256,
                      "bytes_in_image": b.pkg_bytes.get(x.name, 0)}
                     for x in sorted(pkgs + b.firmware_used + microcode_pkgs, key=lambda x: x.name)],
        "kernel_package": {"name": kernel.name, "version": kernel.version,
                           "sha256": kernel.sha256} if kernel else None,
        "modules": image_modules(b.tree, kver),
        "firmware_missing": missing_fw,
        "microcode": ucode or None,
        "pruned": {k: {"files": v[0], "bytes": v[1]} for k, v in sorted(b.pruner.dropped.items())},
        "unused_libraries_dropped": dead_libs,
        "dangling_symlinks_dropped": dangling,
        "units_not_started": not_started,
        "units_with_rdforge_dropins": dropins,
        "storage": storage_done,
        "content_policy": b.policy.report(),
        "package_source": ({"installed_root": str(b.installed.root), "checked": "versions in "
                            "dpkg's status, every file against the sha256 the lock records, "
                            "the kernel's modules against dpkg's md5sums"}
                           if b.installed else None),
        "static_device_nodes": static_nodes,
        "check_warnings": rep.warnings,
        "explain": explain.record(b.tree, b.package_reasons(kernel, microcode_pkgs),
                                  b.module_why, b.firmware_for, left_out),
    }
    p.phase("write", str(out))
    files = [(out, image), (out.with_name(out.name + ".manifest.json"),
                            (json.dumps(manifest, indent=1) + "\n").encode())]
    if not cfg.locked:  # a locked build reads its lock and never writes it
        lock_bytes = lockfile.Lock(cfg.release, cfg.arch, pkgs, kernel, b.firmware_used,
                                   microcode_pkgs, b.trees, b.backend,
                                   {q.name: b.why[q.name] for q in pkgs if q.name in b.why}
                                   ).to_json().encode()
        if _read_or_none(lock_path(cfg)) != lock_bytes:
            files.append((lock_path(cfg), lock_bytes))
    commit_together(files)
    timings = dict(p.timings)
    total = p.done()
    timings["total"] = total
    return BuildResult(out, len(image), sha, pkgs, kver, len(mods), len(b.tree), manifest, timings,
                       build_warnings(mods, missing_fw, b.policy.report(), rep.warnings))


def image_modules(tree: Tree, kver: str) -> list[str]:
    """The module files as the image holds them (most decompressed: .ko, not the package's
    .ko.xz), relative to usr/lib/modules/KVER, so manifest and image compare."""
    base = f"usr/lib/modules/{kver}/"
    return sorted(p[len(base):] for p, e in tree.entries.items()
                  if p.startswith(base) and e.kind == FILE and re.search(r"\.ko(\.\w+)?$", p))


def microcode_index_config(cfg: Config) -> Config:
    """cfg with the microcode packages' component, indexed for them (nothing else uses it)."""
    if "non-free-firmware" in cfg.components:
        return cfg
    return dataclasses.replace(cfg, components=[*cfg.components, "non-free-firmware"])


def lock_path(cfg: Config) -> Path:
    """--lock, else beside the image (`-c FILE` makes it FILE's name with .lock)."""
    return Path(cfg.lock) if cfg.lock else Path(cfg.output + ".lock")


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def commit_together(files: list[tuple[Path, bytes]]) -> None:
    """Image, manifest and lock: all are written under temporary names first, and only when
    every one is complete are they renamed into place. A failure before (an unwritable lock
    path, a full disk) leaves all of them as they were."""
    staged: list[str] = []
    try:
        for path, data in files:
            if path.is_dir():  # a rename onto it would fail only after the others went in
                raise RdforgeError(f"{path}: is a directory")
            try:
                staged.append(stage(path, data))
            except NotADirectoryError:
                raise RdforgeError(f"{path}: a part of the path is not a directory") from None
            except PermissionError:
                raise RdforgeError(f"{path}: permission denied (cannot write there)") from None
        for (path, _), tmp in zip(files, staged, strict=True):
            os.replace(tmp, path)
    except BaseException:
        for tmp in staged:
            discard(tmp)
        raise


def source_date_epoch(newest: int) -> int:
    """$SOURCE_DATE_EPOCH (reproducible-builds.org's convention), else the newest package
    file's time, clamped into what the archive can store."""
    from rdforge.config import EPOCH_MAX, check_epoch

    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is None or env == "":
        return min(max(newest, 0), EPOCH_MAX)
    try:
        value = int(env)
    except ValueError:
        raise ConfigError(f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds") from None
    return check_epoch(value, "SOURCE_DATE_EPOCH")
