"""The static check: prove before writing that an image can work (also on a peer's image)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from rdforge.formats.elf import is_elf, modinfo, read_elf
from rdforge.tree.fixups import LIBDIRS
from rdforge.tree.kmods import modname
from rdforge.tree.model import DIR, FILE, SYMLINK, Tree

UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system")


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elf_files: int = 0
    modules: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _lib_index(tree: Tree) -> dict[str, set[str]]:
    """directory -> names present (following symlinks), for the library directories."""
    out: dict[str, set[str]] = {}
    for p, e in tree.entries.items():
        d, _, n = p.rpartition("/")
        if e.kind in (FILE, SYMLINK):
            out.setdefault(d, set()).add(n)
    return out


def missing_libraries(tree: Tree, priorities: tuple[str, ...] = ("required",),
                      include_needed: bool = True) -> dict[str, list[str]]:
    """soname -> the files that need it but find it nowhere; dlopen notes of the given
    priorities count as needed."""
    names = _lib_index(tree)
    libdirs = [tree.resolve(d) for d in LIBDIRS]
    missing: dict[str, list[str]] = {}
    elves = [(p, read_elf(e.data)) for p, e in sorted(tree.entries.items())
             if e.kind == FILE and is_elf(e.data)]

    def runpath_dirs(path: str, runpath: list[str]) -> list[str]:
        origin = "/" + posixpath.dirname(path)
        return [tree.resolve(r.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
                for r in runpath]

    # A library's own dependencies may be found through the RUNPATH of the program that
    # loads it (the soname is then already loaded), so every RUNPATH directory counts.
    shared = {d for p, i in elves for d in runpath_dirs(p, i.runpath)}
    for path, info in elves:
        dirs = runpath_dirs(path, info.runpath) + libdirs + sorted(shared)
        wanted = [(n, True) for n in info.needed] if include_needed else []
        for note in info.dlopen:
            if note.get("priority", "recommended") in priorities:
                sonames = note.get("soname", [])
                if isinstance(sonames, list) and sonames:
                    wanted.append(("|".join(str(s) for s in sonames), False))
        for soname, _direct in wanted:
            alts = soname.split("|")
            ok = False
            for s in alts:
                if "/" in s:
                    ok = tree.get(s) is not None
                else:
                    ok = any(s in names.get(d, ()) and tree.get(f"{d}/{s}") is not None for d in dirs)
                if ok:
                    break
            if not ok:
                missing.setdefault(alts[0], []).append(path)
    return missing


def _unit_paths(tree: Tree, unit: str) -> str | None:
    for d in UNIT_DIRS:
        e = tree.get(f"{d}/{unit}")
        if e is not None and e.kind == FILE:
            return tree.resolve(f"{d}/{unit}")
        m = re.match(r"^(.+@)[^.]+(\..+)$", unit)  # instance of a template
        if m and tree.get(f"{d}/{m.group(1)}{m.group(2)}") is not None:
            return tree.resolve(f"{d}/{m.group(1)}{m.group(2)}")
    return None


def check_units(tree: Tree, root_unit: str = "initrd.target") -> list[str]:
    """Units that root_unit requires or wants (directly, and through .wants/.requires
    directories) but that are not in the tree."""
    problems: list[str] = []
    if _unit_paths(tree, root_unit) is None:
        return [f"unit {root_unit} is missing"]
    seen: set[str] = set()
    todo = [root_unit]
    while todo:
        unit = todo.pop()
        if unit in seen:
            continue
        seen.add(unit)
        path = _unit_paths(tree, unit)
        if path is None:
            continue
        deps: list[tuple[str, bool]] = []
        for line in tree.entries[path].data.decode(errors="replace").splitlines():
            k, sep, v = line.partition("=")
            if sep and k.strip() in ("Requires", "Wants", "OnFailure"):
                deps += [(u, k.strip() == "Requires") for u in v.split()]
        for d in UNIT_DIRS:
            for kind in ("wants", "requires"):
                wdir = f"{d}/{unit}.{kind}"
                real = tree.resolve(wdir)
                if real in tree.entries and tree.entries[real].kind == DIR:
                    deps += [(n, kind == "requires") for n in tree.listdir(real)]
        for dep, hard in deps:
            if _unit_paths(tree, dep) is None:
                if hard:
                    problems.append(f"unit {dep} (required by {unit}) is missing")
            else:
                todo.append(dep)
    return problems


def check_modules(tree: Tree) -> tuple[int, list[str]]:
    """Every module modules.dep lists is there, and so is every module each one's .modinfo
    says it depends on (modules.dep alone misses those: depmod writes an empty dependency
    line for a module whose dependency was left out, and the module then fails to load)."""
    problems: list[str] = []
    count = 0
    for moddir in tree.listdir("usr/lib/modules"):
        base = f"usr/lib/modules/{moddir}"
        dep = tree.get(f"{base}/modules.dep")
        if dep is None:
            problems.append(f"/{base}/modules.dep is missing")
            continue
        if tree.get(f"{base}/modules.dep.bin") is None:
            problems.append(f"/{base}/modules.dep.bin is missing (modprobe reads only it)")
        builtin = tree.get(f"{base}/modules.builtin")
        known = {modname(line) for line in builtin.data.decode().split()} \
            if builtin is not None and builtin.kind == FILE else set()
        listed: list[str] = []
        for line in dep.data.decode().splitlines():
            mod, _, deps = line.partition(":")
            count += 1
            listed.append(mod)
            known.add(modname(mod))
            for p in [mod] + deps.split():
                if tree.get(f"{base}/{p}") is None:
                    problems.append(f"module {p} (listed in modules.dep) is missing")
        for mod in listed:
            e = tree.get(f"{base}/{mod}")
            if e is None or e.kind != FILE or not is_elf(e.data):
                continue  # missing (said above), or compressed as a peer's images keep them
            for key, value in modinfo(e.data):
                wanted = [d for d in value.split(",") if d] if key == "depends" else []
                problems += [f"module {modname(mod)} needs {d.replace('-', '_')} (its "
                             ".modinfo depends on it), which is not in the image" for d in wanted
                             if d.replace("-", "_") not in known]
    return count, problems


def check_tree(tree: Tree) -> CheckReport:
    rep = CheckReport()
    init = tree.get("init")
    if init is None or init.kind != FILE or not is_elf(init.data) and not init.data.startswith(b"#!"):
        rep.problems.append("/init is missing or not executable")
    for soname, users in sorted(missing_libraries(tree).items()):
        more = f" and {len(users) - 1} more" if len(users) > 1 else ""
        rep.problems.append(f"library {soname} needed by /{users[0]}{more} is missing")
    for soname, users in sorted(missing_libraries(tree, ("recommended",), False).items()):
        rep.warnings.append(f"library {soname} (dlopen, recommended) for /{users[0]} is missing")
    rep.elf_files = sum(1 for _p, e in tree.files() if is_elf(e.data))
    if tree.get("usr/lib/systemd/systemd") is not None:
        rep.problems += check_units(tree)
    rep.modules, mod_problems = check_modules(tree)
    rep.problems += mod_problems
    return rep
