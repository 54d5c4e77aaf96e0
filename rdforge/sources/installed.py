"""Packages installed in a root (a package build's chroot, whose Build-Depends apt installed)
as a package source for a locked build. Each pinned package must be installed at the pinned
version and architecture (dpkg's status). The lock records what the image takes from each
package (paths, modes, links and every file's sha256, read from the .deb when the lock was
written); the root only supplies file contents, each checked against that sha256, read
where dpkg put them (diversions followed). The kernel's modules are checked against dpkg's
md5sums of the kernel package."""

from __future__ import annotations

import hashlib
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from rdforge.errors import SourceError
from rdforge.formats.deb822 import parse_stanzas
from rdforge.sources.archive import Package

DPKG = "var/lib/dpkg"
# Directories a merged /usr makes aliases of /usr's: bookworm's kernel packages ship their
# modules as /lib/modules/KVER, and dpkg records them under that name.
USR_ALIASES = ("/bin/", "/sbin/", "/lib/", "/lib64/")


def canonical(path: str) -> str:
    """path as merged /usr names it: /lib/modules/... is /usr/lib/modules/..."""
    return "/usr" + path if path.startswith(USR_ALIASES) else path


@dataclass
class Installed:
    name: str
    version: str
    arch: str
    conffiles: dict[str, str] = field(default_factory=dict)  # path -> md5


@dataclass
class InstalledRoot:
    root: Path
    packages: dict[str, Installed] = field(default_factory=dict)  # name or name:arch
    diverted: dict[str, tuple[str, str]] = field(default_factory=dict)  # from -> (to, by)

    @classmethod
    def read(cls, root: Path) -> InstalledRoot:
        status = root / DPKG / "status"
        try:
            text = status.read_text(errors="surrogateescape")
        except OSError as e:
            raise SourceError(f"{status}: cannot read dpkg's status ({e.strerror})") from None
        out = cls(root)
        for st in parse_stanzas(text):
            if st.get("Status", "").split()[-1:] != ["installed"] or "Package" not in st:
                continue
            conf = {}
            for line in st.get("Conffiles", "").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    conf[parts[0]] = parts[1]
            pkg = Installed(st["Package"], st.get("Version", ""), st.get("Architecture", ""), conf)
            out.packages[f"{pkg.name}:{pkg.arch}"] = pkg
            out.packages.setdefault(pkg.name, pkg)
        div = root / DPKG / "diversions"
        if div.is_file():
            lines = div.read_text(errors="surrogateescape").splitlines()
            for i in range(0, len(lines) - 2, 3):
                out.diverted[lines[i]] = (lines[i + 1], lines[i + 2])
        return out

    def check(self, p: Package) -> Installed:
        inst = self.packages.get(f"{p.name}:{p.arch}") or self.packages.get(p.name)
        if inst is None:
            raise SourceError(f"{p.key}: pinned by the lock but not installed in {self.root} "
                              f"(add {p.name} (= {p.version}) to Build-Depends)")
        if inst.version != p.version or inst.arch not in (p.arch, "all"):
            raise SourceError(f"{p.name}: {self.root} has {inst.version} ({inst.arch}) "
                              f"installed, the lock pins {p.version} ({p.arch})")
        return inst

    def _info(self, inst: Installed, suffix: str) -> Path:
        info = self.root / DPKG / "info"
        multi = info / f"{inst.name}:{inst.arch}.{suffix}"
        return multi if multi.exists() else info / f"{inst.name}.{suffix}"

    def md5sums(self, inst: Installed) -> dict[str, str]:
        """path (with leading /) -> md5, from dpkg's records of the package."""
        sums = {k: v for k, v in inst.conffiles.items()}
        f = self._info(inst, "md5sums")
        if f.exists():
            for line in f.read_text(errors="surrogateescape").splitlines():
                md5, _, path = line.partition("  ")
                if path:
                    sums["/" + path] = md5
        return sums

    def members(self, p: Package, recorded: dict[str, object], max_file: int
                ) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        """The package's members as the lock recorded them from its .deb (what the image
        takes from it: paths, modes, links), each file's content read where dpkg installed
        it and checked against the sha256 the lock holds. dpkg keeps neither modes of
        directories nor a record of what maintainer scripts changed since (systemd makes
        /etc/credstore 0700, base-files' /var/lock becomes a link), so only content comes
        from the root."""
        self.check(p)
        newest = recorded.get("newest")
        rows = recorded.get("members")
        if not isinstance(newest, int) or not isinstance(rows, list):
            raise SourceError(f"{p.name}: the lock's file record is malformed")
        out: list[tuple[tarfile.TarInfo, bytes | None]] = []
        for row in rows:
            if not isinstance(row, list) or len(row) < 3 or not isinstance(row[0], str):
                raise SourceError(f"{p.name}: the lock's file record is malformed")
            name, kind = row[0], row[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = newest
            size = {"d": 3, "l": 3, "h": 3, "f": 4}.get(str(kind), 0)
            if len(row) == size + 1 and kind != "l" and isinstance(row[-1], str) \
                    and row[-1].count(":") == 1:
                ti.uname, ti.gname = row[-1].split(":")  # owned by another account than root
                row = row[:-1]
            if kind == "d" and len(row) == 3 and isinstance(row[2], int):
                ti.type, ti.mode = tarfile.DIRTYPE, row[2]
                out.append((ti, None))
            elif kind in ("l", "h") and len(row) == 3 and isinstance(row[2], str):
                ti.type = tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE
                ti.linkname, ti.mode = row[2], 0o777
                out.append((ti, None))
            elif kind == "f" and len(row) == 4 and isinstance(row[2], int):
                ti.type, ti.mode = tarfile.REGTYPE, row[2]
                data = self._content(p, "/" + name.removeprefix("./"), max_file)
                if hashlib.sha256(data).hexdigest() != row[3]:
                    raise SourceError(f"{p.name}: /{name.removeprefix('./')} differs from the "
                                      "package's (its sha256 is not the one the lock records)")
                ti.size = len(data)
                out.append((ti, data))
            else:
                raise SourceError(f"{p.name}: the lock's file record is malformed ({kind!r})")
        return out

    def _content(self, p: Package, path: str, max_file: int) -> bytes:
        to, by = self.diverted.get(path, ("", ""))
        where = to if to and by != p.name else path  # another package diverted it there
        full = self.root / where.lstrip("/")
        try:
            st = full.lstat()
            if not stat.S_ISREG(st.st_mode):
                raise SourceError(f"{p.name}: {path} is no longer a file in {self.root}")
            if st.st_size > max_file:
                raise SourceError(f"{p.name}: {path} is larger than max_file_size")
            return full.read_bytes()
        except FileNotFoundError:
            raise SourceError(f"{p.name}: {path} is missing from {self.root}") from None
        except OSError as e:
            raise SourceError(f"{p.name}: {path}: {e.strerror}") from None

    def verify_tree(self, p: Package, prefix: str) -> int:
        """Check every file dpkg recorded for p under prefix (a kernel's modules; /usr's
        aliases count, as a merged /usr has them), each where dpkg put it; returns how many.
        A package with no file there is refused: nothing would have been checked."""
        inst = self.check(p)
        n = 0
        for path, md5 in sorted(self.md5sums(inst).items()):
            if not canonical(path).startswith(canonical(prefix)):
                continue
            full = self.root / path.lstrip("/")
            try:
                data = full.read_bytes()
            except OSError:
                raise SourceError(f"{p.name}: {path} is missing from {self.root}") from None
            if hashlib.md5(data).hexdigest() != md5:  # noqa: S324
                raise SourceError(f"{p.name}: {path} differs from what dpkg installed")
            n += 1
        if n == 0:
            raise SourceError(f"{p.name}: dpkg records no file of it under {prefix} in "
                              f"{self.root}, so none could be checked")
        return n

    def module_dir(self, kver: str) -> Path:
        """Where the kernel's modules are: /usr/lib/modules/KVER, or /lib/modules/KVER in a
        root without a merged /usr (a bookworm build chroot)."""
        for d in ("usr/lib/modules", "lib/modules"):
            if (self.root / d / kver).is_dir():
                return self.root / d / kver
        raise SourceError(f"{self.root}: no modules of kernel {kver} (neither "
                          f"/usr/lib/modules/{kver} nor /lib/modules/{kver})")
