"""The rpm-md backend's side of a build (the counterpart of plan.py for apt): the repository
of the configuration, its packages resolved with rpm's rules, the kernel package the profile
names, and the package that provides a soname. Packages leave here as the same Package
records apt's do (format "rpm", version the EVR), so fetching, locking and unpacking treat
them alike; each .rpm's header signature is checked where it is unpacked."""

from __future__ import annotations

from pathlib import Path

from rdforge.config import Config, profile
from rdforge.errors import ResolveError
from rdforge.formats.rpmmd import RpmPackage
from rdforge.sources.archive import Package
from rdforge.sources.backend import Resolved
from rdforge.sources.rpmmd import RpmMdRepo
from rdforge.sources.rpmresolve import RpmUniverse, resolve


def repository(cfg: Config) -> RpmMdRepo:
    return RpmMdRepo(cfg.mirror, Path(cfg.keyring), offline=cfg.offline)


def record(p: RpmPackage, base: str) -> Package:
    return Package(name=p.name, version=p.evr, arch=p.arch, filename=p.location,
                   sha256=p.sha256, size=p.size, source=p.source_rpm, base=base.rstrip("/"),
                   format="rpm")


class RpmSource:
    """The rpm-md backend (sources/backend.py): the repository's packages, indexed for
    resolution."""

    links_only = True  # rpm's generated Requires name linked libraries only

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.repo = repository(cfg)
        self.universe = RpmUniverse(self.repo.packages(), filelists=self.repo.filelists)

    def resolve(self, names: list[str]) -> Resolved:
        res = resolve(self.universe, names, prefer=tuple(self.cfg.prefer),
                      weak=self.cfg.weak_dependencies)
        return Resolved([record(p, self.repo.base) for p in res.packages],
                        {n: (res.why.get(n, ""), r) for n, r in res.rule.items()})

    def kernel(self) -> Package:
        name = profile(self.cfg.distribution).kernel_package
        p = self.universe.candidates.get(name)
        if p is None:
            raise ResolveError(f"{self.repo.base}: no kernel package {name!r}")
        if self.cfg.kernel_version and not p.version.startswith(self.cfg.kernel_version.split("-")[0]):
            raise ResolveError(f"{self.repo.base}: {name} is {p.evr}, not kernel "
                               f"{self.cfg.kernel_version}")
        return record(p, self.repo.base)

    def package_for_soname(self, soname: str) -> str | None:
        """The package providing a 64-bit soname, as rpm's generator names it."""
        options = self.universe.providers(f"{soname}()(64bit)")
        return sorted(options, key=lambda p: (len(p.name), p.name))[0].name if options else None

    def candidate(self, name: str) -> Package | None:
        p = self.universe.candidates.get(name)
        return record(p, self.repo.base) if p is not None else None
