"""From configuration to a pinned package set: which archive, which packages, which kernel."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from rdforge.config import Config
from rdforge.errors import KernelError, ResolveError, SourceError
from rdforge.formats.deb import DebFile
from rdforge.sources.aptconf import AptSource, map_to_release, read_host_sources
from rdforge.sources.archive import Archive, Package, package_from_control
from rdforge.sources.backend import Resolved
from rdforge.sources.resolve import Universe, parse_relations, resolve
from rdforge.sources.version import compare


def archive_sources(cfg: Config) -> list[AptSource]:
    if cfg.mirror:
        return [AptSource(cfg.mirror.rstrip("/"), (cfg.release,), tuple(cfg.components),
                          Path(cfg.keyring) if cfg.keyring else None)]
    srcs = [AptSource(s.uri, s.suites, tuple(cfg.components), s.keyring)
            for s in map_to_release(read_host_sources(), cfg.release)]
    if not srcs:
        raise SourceError("the host's apt configuration lists no Debian archive "
                          "(give --mirror URI or --deb-dir DIR)")
    return srcs


def local_packages(deb_dir: Path, arch: str) -> list[Package]:
    """An index made from the control files of a directory of .deb files."""
    if not deb_dir.is_dir():
        raise SourceError(f"{deb_dir}: no such package directory")
    out = []
    for p in sorted(deb_dir.glob("*.deb")):
        with DebFile(p) as d:
            ctl = d.control()
        if ctl.get("Architecture") not in (arch, "all"):
            continue
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
        pkg = package_from_control(ctl, "", p.name, sha, p.stat().st_size)
        out.append(dataclasses.replace(pkg, local=str(p.resolve())))
    return out


@dataclass
class PackageSource:
    """The universe plus the archive it came from (None for a local directory)."""

    universe: Universe
    archive: Archive | None


def load_universe(cfg: Config) -> PackageSource:
    if cfg.deb_dir:
        return PackageSource(Universe(local_packages(Path(cfg.deb_dir), cfg.arch), cfg.arch), None)
    arch = Archive(archive_sources(cfg), cfg.arch, offline=cfg.offline,
                   keyring=Path(cfg.keyring) if cfg.keyring else None)
    return PackageSource(Universe(arch.packages(), cfg.arch), arch)


class AptBackend:
    """The apt backend (sources/backend.py): Debian's archive or a directory of .debs."""

    links_only = False  # Depends name what a package loads, linked or not

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.source = load_universe(cfg)

    def resolve(self, names: list[str]) -> Resolved:
        res = resolve(self.source.universe, names, exclude=tuple(self.cfg.remove_packages),
                      prefer=tuple(self.cfg.prefer))
        return Resolved(res.packages, {p.name: ("", "requested") if res.why[p.name] == "requested"
                                       else (res.why[p.name], res.rule[p.name])
                                       for p in res.packages})

    def kernel(self) -> Package:
        return kernel_package(self.source.universe, self.cfg)

    def package_for_soname(self, soname: str) -> str | None:
        return package_for_soname(self.source.universe, soname)

    def candidate(self, name: str) -> Package | None:
        return self.source.universe.candidates.get(name)


def resolve_set(u: Universe, cfg: Config, names: list[str]) -> list[Package]:
    return resolve(u, names, exclude=tuple(cfg.remove_packages), prefer=tuple(cfg.prefer)).packages


def kernel_package(u: Universe, cfg: Config) -> Package:
    """linux-image-KVER for --kernel-version, else the one the newest meta package names."""
    if cfg.kernel_version:
        pkg = u.candidates.get(f"linux-image-{cfg.kernel_version}")
        if pkg is None:
            order = functools.cmp_to_key(compare)  # dpkg's: 6.12.9 before 6.12.57
            avail = [n[len("linux-image-"):] for n in sorted(
                (n for n in u.candidates if re.match(r"^linux-image-\d", n)
                 and not n.endswith(("-dbg", "-unsigned"))),
                key=lambda n: (order(u.candidates[n].version), n))]
            raise KernelError(f"unknown kernel version {cfg.kernel_version!r} "
                              f"(the archive has: {', '.join(avail[-5:]) or 'none'})")
        return pkg
    meta = u.candidates.get(f"linux-image-{cfg.arch}")
    if meta is None:  # e.g. a local directory holding just the kernel package: take the newest
        kernels = [p for n, p in u.candidates.items() if re.match(r"^linux-image-\d", n)
                   and not n.endswith(("-dbg", "-unsigned"))]
        if kernels:
            return max(kernels, key=lambda p: functools.cmp_to_key(compare)(p.version))
        raise KernelError(f"the archive has no linux-image-{cfg.arch}; give --kernel-version "
                          "or --modules-dir")
    for alts in parse_relations(meta.depends):
        name = alts[0].name
        if name.startswith("linux-image-") and name in u.candidates:
            return u.candidates[name]
    raise KernelError(f"linux-image-{cfg.arch} {meta.version} names no kernel package")


def package_for_soname(u: Universe, soname: str) -> str | None:
    """Debian's library package naming (policy 8.1): libfoo.so.3 is in libfoo3 (maybe with a
    t64 suffix), libfoo-1.2.so.0 in libfoo-1.2-0; else the shortest runtime package named
    after the library."""
    m = re.match(r"^(lib.+?)\.so(?:\.(\d+))?", soname)
    if not m:
        return None
    base, ver = m.group(1), m.group(2) or ""
    sep = "-" if base[-1].isdigit() else ""
    for cand in (f"{base}{sep}{ver}", f"{base}{sep}{ver}t64", f"{base}-{ver}", f"{base}-{ver}t64"):
        if cand.lower() in u.candidates:
            return cand.lower()
    pref = [n for n in u.candidates if n.startswith(base.lower() + "-")
            and not re.search(r"-(dev|dbg|doc|bin|tools|utils)$", n)]
    pref.sort(key=lambda n: (len(n), n))
    return pref[0] if pref else None


def newest(pkgs: list[Package]) -> dict[str, Package]:
    out: dict[str, Package] = {}
    for p in pkgs:
        if p.name not in out or compare(p.version, out[p.name].version) > 0:
            out[p.name] = p
    return out


def require_names(u: Universe, names: list[str]) -> None:
    for n in names:
        rel = parse_relations(n)[0][0]
        if rel.name not in u.candidates and rel.name not in u.providers:
            raise ResolveError(f"package {n!r} is not in the archive")
