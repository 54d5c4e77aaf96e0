"""The one interface a build uses to get packages, whatever the packaging world.

A backend reads and verifies its signed index, resolves names with its own dependency rules,
names the kernel package and the package of a soname; the packages it returns are Package
records (sources/archive.py), which the fetcher, the lock and the unpacking treat alike. Two
backends exist: apt (plan.py over archive.py, resolve.py, version.py) and rpm-md (rpmplan.py
over rpmmd.py, rpmresolve.py, rpmversion.py, richdep.py). A profile (rdforge/profiles/*.toml)
names the backend.

A third backend (pacman, say) implements Backend, gives its records a format of their own,
and adds: its index reader and verifier, its version order and resolver, a reader for its
package files in formats/ and their members in tree/unpack.package_members, and a profile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rdforge.config import Config, profile
from rdforge.formats.rpm import Rpm
from rdforge.sources.archive import Package


@dataclass
class Resolved:
    """What a resolution chose, and for each package why: (the package whose dependency
    pulled it in, or "" for one asked for; the rule, as the backend states it)."""

    packages: list[Package]
    why: dict[str, tuple[str, str]]


class Backend(Protocol):
    # Whether dependencies name only linked libraries (rpm's soname Requires): then the
    # libraries that are loaded without a .note.dlopen are asked for too.
    links_only: bool

    def resolve(self, names: list[str]) -> Resolved:
        """The packages names need, dependencies included, as the backend's rules pick them."""
        ...

    def kernel(self) -> Package:
        """The kernel package (--kernel-version, else the newest)."""
        ...

    def package_for_soname(self, soname: str) -> str | None:
        """The name of the package that carries a shared library."""
        ...

    def candidate(self, name: str) -> Package | None:
        """The version of a package a build would take, by name."""
        ...


def open_backend(cfg: Config) -> Backend:
    """The configured distribution's backend, its index read and verified."""
    if profile(cfg.distribution).backend == "rpm-md":
        from rdforge.sources.rpmplan import RpmSource

        return RpmSource(cfg)
    from rdforge.sources.plan import AptBackend

    return AptBackend(cfg)


def checked_package(p: Package, path: Path, cfg: Config) -> Path | Rpm:
    """The fetched file of p, ready to unpack. Its sha256 is the signed index's (or the
    lock's); an .rpm's header signature is checked here against the configured key, so that
    a build from a lock, which reads no index, still takes only packages the key signed."""
    if p.format == "rpm":
        from rdforge.sources.rpmmd import verify_package

        return verify_package(path, Path(cfg.keyring), f"{p.key} ({path})")
    return path
