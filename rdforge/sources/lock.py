"""The lock file: the pinned package set of a build (name, version, arch, sha256, size, and
the file's path in the archive). It names no mirror host and no path on the machine that
wrote it, so a lock committed to a source tree builds the same bytes anywhere: from the
archive, the cache, or a directory of the pinned .debs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rdforge.errors import LockError
from rdforge.fsutil import write_atomic
from rdforge.sources.archive import Package

LOCK_VERSION = 2
READABLE = (1, 2)  # version 1 also recorded the mirror and local paths; both are ignored


@dataclass
class Lock:
    release: str
    arch: str
    packages: list[Package]
    kernel: Package | None
    firmware: list[Package] = field(default_factory=list)  # read for firmware= files only
    microcode: list[Package] = field(default_factory=list)  # read for the early cpio only
    # per package: {"newest": time, "members": [...]}, what the image takes from it (for
    # builds from installed packages, which dpkg keeps no modes or links of)
    trees: dict[str, dict[str, object]] = field(default_factory=dict)
    backend: str = "apt"  # or "rpm-md" (config.BACKENDS)
    # package -> (the package whose dependency pulled it in, or ""; the rule): what the
    # resolver found, kept so that a build from the lock can still explain its image
    why: dict[str, tuple[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        def rec(p: Package) -> dict[str, object]:
            d = asdict(p)
            d.pop("base"), d.pop("local")  # where this machine found it: not the lock's business
            return {"name": d.pop("name"), "version": d.pop("version"),
                    "architecture": d.pop("arch"), "sha256": d.pop("sha256"),
                    "size": d.pop("size"), "path": d.pop("filename"),
                    **{k: v for k, v in d.items() if v not in ("", False)}}

        data: dict[str, object] = {"lock-version": LOCK_VERSION}
        if self.backend != "apt":
            data["backend"] = self.backend
        data |= {"release": self.release, "arch": self.arch,
                 "kernel": rec(self.kernel) if self.kernel else None,
                 "packages": [rec(p) for p in self.packages]}
        if self.firmware:
            data["firmware"] = [rec(p) for p in self.firmware]
        if self.microcode:
            data["microcode"] = [rec(p) for p in self.microcode]
        if self.why:
            data["why"] = {n: list(w) for n, w in sorted(self.why.items())}
        text = json.dumps(data, indent=1, sort_keys=False)
        if self.trees:  # one line per member: long, but readable and diffable
            parts = []
            for name in sorted(self.trees):
                t = self.trees[name]
                rows = t.get("members")
                members = ",\n   ".join(json.dumps(r) for r in rows) if isinstance(rows, list) else ""
                parts.append(f' {json.dumps(name)}: {{"newest": {json.dumps(t.get("newest"))}, '
                             f'"members": [\n   {members}]}}')
            text = text[:-2] + ',\n "trees": {\n' + ",\n".join(parts) + "\n }\n}"
        return text + "\n"


def _pkg(d: dict[str, object], where: str) -> Package:
    try:
        path = str(d["path"])
        if path.startswith("/"):  # a version 1 lock's local .deb: only its name is kept
            path = path.rsplit("/", 1)[-1]
        return Package(name=str(d["name"]), version=str(d["version"]),
                       arch=str(d["architecture"]), filename=path,
                       sha256=str(d["sha256"]), size=int(str(d["size"])),
                       depends=str(d.get("depends", "")), pre_depends=str(d.get("pre_depends", "")),
                       provides=str(d.get("provides", "")), multi_arch=str(d.get("multi_arch", "")),
                       source=str(d.get("source", "")), essential=bool(d.get("essential", False)),
                       priority=str(d.get("priority", "optional")),
                       format=str(d.get("format", "")))
    except (KeyError, ValueError) as e:
        raise LockError(f"{where}: malformed package entry ({e})") from None


def read(path: Path) -> Lock:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LockError(f"{path}: no lock file (build once without --locked to write it)") from None
    except ValueError as e:
        raise LockError(f"{path}: malformed lock file ({e})") from None
    if not isinstance(data, dict) or data.get("lock-version") not in READABLE:
        raise LockError(f"{path}: not an rdforge lock file of version "
                        f"{' or '.join(map(str, READABLE))}")
    def pkgs(key: str) -> list[Package]:
        recs = data.get(key, [])
        if not isinstance(recs, list) or not all(isinstance(d, dict) for d in recs):
            raise LockError(f"{path}: {key} must be a list of package entries")
        return [_pkg(d, str(path)) for d in recs]

    kernel = data.get("kernel")
    if kernel is not None and not isinstance(kernel, dict):
        raise LockError(f"{path}: kernel must be a package entry")
    trees = data.get("trees", {})
    if not isinstance(trees, dict):
        raise LockError(f"{path}: trees must be a table")
    why = data.get("why", {})
    if not isinstance(why, dict) or not all(
            isinstance(w, list) and len(w) == 2 and all(isinstance(x, str) for x in w)
            for w in why.values()):
        raise LockError(f"{path}: why must be a table of [pulled in by, rule] pairs")
    return Lock(str(data.get("release", "")), str(data.get("arch", "")), pkgs("packages"),
                _pkg(kernel, str(path)) if kernel else None, pkgs("firmware"), pkgs("microcode"),
                {str(k): v for k, v in trees.items() if isinstance(v, dict)},
                str(data.get("backend", "apt")),
                {str(k): (w[0], w[1]) for k, w in why.items()})


def write(path: Path, lock: Lock) -> None:
    write_atomic(path, lock.to_json().encode())
