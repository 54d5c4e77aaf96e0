"""Dependency resolution with rpm's semantics, for an initrd's package set from rpm-md
repositories (what `dnf --installroot DIR install --setopt=install_weak_deps=False` does
for an empty root, made deterministic and explainable).

- Candidates: the newest EVR of each name among the architectures asked for (x86_64 and
  noarch), the way a fresh dnf install sees a repository.
- Requires are matched against Provides with rpm's range overlap (rpmdsCompare): an
  unversioned side matches any version; a missing release matches every release.
- File dependencies (`/usr/bin/sh`) are matched against the files primary.xml lists and,
  only when none there provides one, against filelists.xml (loaded on first need).
- Rich dependencies: and, or, if/else, unless/else, with, without.
- Requires(pre/post) count like plain Requires, as for dnf; rpmlib() ones are rpm's own.
- Weak dependencies (Recommends, Supplements) are ignored unless asked for.
- Dependencies only one package satisfies are taken first, those with a choice after, so
  that a package another dependency forces is the one chosen. Among several providers: one
  already chosen; else the package named as the dependency; else one the configuration
  prefers; else one not obsoleted by another candidate; else the shortest name, then the
  alphabetically first. The alternatives of an `or` are ranked as one set. These give
  libsolv's choices in every case tests/sources/test_rpm_choice.py puts to dnf.
- Conflicts and Obsoletes between chosen packages fail the resolution with both named."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rdforge.errors import FormatError, ResolveError
from rdforge.formats.rpmmd import Dep, RpmPackage
from rdforge.sources import richdep
from rdforge.sources.rpmversion import EVR, compare

ARCHES = ("x86_64", "noarch")
LESS, GREATER, EQUAL = 1, 2, 4
SENSE = {"": 0, "EQ": EQUAL, "LT": LESS, "LE": LESS | EQUAL, "GT": GREATER, "GE": GREATER | EQUAL}


def overlaps(a_flags: str, a_evr: str, b_flags: str, b_evr: str) -> bool:
    """Whether two version ranges share a version (rpmdsCompare)."""
    sa, sb = SENSE[a_flags], SENSE[b_flags]
    if not sa or not sb:
        return True
    c = compare(EVR.parse(a_evr), EVR.parse(b_evr))
    if c < 0:
        return bool(sa & GREATER or sb & LESS)
    if c > 0:
        return bool(sa & LESS or sb & GREATER)
    return bool((sa & EQUAL and sb & EQUAL) or (sa & LESS and sb & LESS)
                or (sa & GREATER and sb & GREATER))


@dataclass
class Resolution:
    packages: list[RpmPackage]
    why: dict[str, str] = field(default_factory=dict)  # name -> the package that pulled it in
    rule: dict[str, str] = field(default_factory=dict)  # name -> "requires DEP", "asked for"


class RpmUniverse:
    def __init__(self, packages: list[RpmPackage], arches: tuple[str, ...] = ARCHES,
                 filelists: Callable[[], dict[str, list[str]]] | None = None) -> None:
        self.candidates: dict[str, RpmPackage] = {}
        for p in packages:
            if p.arch not in arches:
                continue
            cur = self.candidates.get(p.name)
            if cur is None or compare(EVR(p.epoch, p.version, p.release),
                                      EVR(cur.epoch, cur.version, cur.release)) > 0:
                self.candidates[p.name] = p
        self.provides: dict[str, list[tuple[RpmPackage, Dep]]] = {}
        self.files: dict[str, list[RpmPackage]] = {}
        for p in self.candidates.values():
            for d in p.deps.get("provides", ()):
                self.provides.setdefault(d.name, []).append((p, d))
            for f in p.files:
                self.files.setdefault(f, []).append(p)
        self._filelists = filelists
        self._full_files: dict[str, list[str]] | None = None
        self.obsoleted = {q.name for p in self.candidates.values()
                          for d in p.deps.get("obsoletes", ())
                          for q in self.named(d) if q.name != p.name}

    def named(self, d: Dep) -> list[RpmPackage]:
        """Candidates whose own name and EVR match d (what Obsoletes and Conflicts name)."""
        p = self.candidates.get(d.name)
        return [p] if p is not None and overlaps("EQ", p.evr, d.flags, d.evr) else []

    def providers(self, name: str, flags: str = "", evr: str = "") -> list[RpmPackage]:
        out = [p for p, d in self.provides.get(name, []) if overlaps(d.flags, d.evr, flags, evr)]
        if name.startswith("/"):
            owners = self.files.get(name)
            if owners is None and not out and self._filelists is not None:
                if self._full_files is None:
                    self._full_files = self._filelists()
                owners = [self.candidates[n] for n in self._full_files.get(name, [])
                          if n in self.candidates]
            out += [p for p in owners or [] if p not in out]
        return out


def _parse_dep(d: Dep) -> richdep.Node:
    return richdep.parse(d.name) if richdep.is_rich(d.name) else richdep.Atom(d.name, d.flags, d.evr)


class _Solver:
    def __init__(self, u: RpmUniverse, prefer: tuple[str, ...]) -> None:
        self.u, self.prefer = u, prefer
        self.chosen: dict[str, RpmPackage] = {}
        self.why: dict[str, str] = {}
        self.rule: dict[str, str] = {}

    def reason(self, name: str) -> str:
        by = self.why.get(name, "")
        return f"{by} {self.rule[name]}" if by else self.rule.get(name, "")

    def provided(self, a: richdep.Atom) -> list[RpmPackage]:
        return [p for p in self.u.providers(a.name, a.flags, a.evr) if p.name in self.chosen]

    def holds(self, n: richdep.Node) -> bool:
        if isinstance(n, richdep.Atom):
            return bool(self.provided(n))
        ops = n.operands
        if n.op == "and":
            return all(self.holds(x) for x in ops)
        if n.op == "or":
            return any(self.holds(x) for x in ops)
        if n.op in ("if", "unless"):
            cond = self.holds(ops[1]) if n.op == "if" else not self.holds(ops[1])
            return self.holds(ops[0]) if cond else (self.holds(ops[2]) if len(ops) > 2 else True)
        both = self._with(n)
        return any(p.name in self.chosen for p in both)

    def _with(self, n: richdep.Rich) -> list[RpmPackage]:
        """Packages that provide all of a `with`, or the first and none of a `without`."""
        sets = [self._all_providers(x) for x in n.operands]
        if n.op == "with":
            return [p for p in sets[0] if all(p in s for s in sets[1:])]
        return [p for p in sets[0] if p not in sets[1]]

    def _all_providers(self, n: richdep.Node) -> list[RpmPackage]:
        if not isinstance(n, richdep.Atom):
            raise FormatError(f"rich dependency: {n.op} inside with/without is not supported")
        return self.u.providers(n.name, n.flags, n.evr)

    def pick(self, options: list[RpmPackage], dep_name: str) -> RpmPackage:
        def rank(p: RpmPackage) -> tuple[int, int, int, int, str]:
            pref = self.prefer.index(p.name) if p.name in self.prefer else len(self.prefer)
            return (p.name != dep_name, pref, p.name in self.u.obsoleted, len(p.name), p.name)
        return min(options, key=rank)

    def satisfy(self, n: richdep.Node, who: str, text: str) -> list[RpmPackage]:
        """Packages to add so that n holds (none when it already does)."""
        if self.holds(n):
            return []
        if isinstance(n, richdep.Atom):
            options = self.u.providers(n.name, n.flags, n.evr)
            if not options:
                raise ResolveError(f"{who} requires {text}, which no package provides")
            return [self.pick(options, n.name)]
        ops = n.operands
        if n.op == "and":
            return [p for x in ops for p in self.satisfy(x, who, text)]
        if n.op == "or":
            if all(isinstance(x, richdep.Atom) for x in ops):
                # The alternatives' providers, ranked as one set (as libsolv does).
                options = [p for x in ops for p in self._all_providers(x)]
                if options:
                    return [self.pick(options, "")]
            for x in ops:
                try:
                    return self.satisfy(x, who, text)
                except ResolveError:
                    continue
            raise ResolveError(f"{who} requires {text}, and no alternative is available")
        if n.op in ("if", "unless"):
            cond = self.holds(ops[1]) if n.op == "if" else not self.holds(ops[1])
            target = ops[0] if cond else (ops[2] if len(ops) > 2 else None)
            return self.satisfy(target, who, text) if target is not None else []
        options = self._with(n)
        if not options:
            raise ResolveError(f"{who} requires {text}, which no package provides")
        return [self.pick(options, "")]

    def add(self, p: RpmPackage, rule: str, by: str = "") -> list[RpmPackage]:
        if p.name in self.chosen:
            return []
        self.chosen[p.name] = p
        self.why[p.name] = by
        self.rule[p.name] = rule
        return [p]


def resolve(u: RpmUniverse, names: list[str], prefer: tuple[str, ...] = (),
            weak: bool = False) -> Resolution:
    """The packages names need, with what pulled each in."""
    s = _Solver(u, prefer)
    todo: list[RpmPackage] = []
    for name in names:
        if name in u.candidates:
            todo += s.add(u.candidates[name], "asked for")
            continue
        options = u.providers(name)
        if not options:
            raise ResolveError(f"no package named or providing {name!r}")
        todo += s.add(s.pick(options, name), f"asked for {name}")
    kinds = ("requires", "recommends") if weak else ("requires",)
    # As libsolv decides forced steps first: a dependency only one package can satisfy is
    # taken at once; one with a choice waits until nothing forced is left, so that a package
    # some other dependency needs anyway is the one chosen (Requires: shell and zsh -> zsh).
    # Rich dependencies wait likewise, and are looked at again while their conditions can
    # still come true.
    waiting: list[tuple[RpmPackage, str, Dep]] = []
    while True:
        while todo:
            p = todo.pop(0)
            for kind in kinds:
                for d in p.deps.get(kind, ()):
                    if d.name.startswith("rpmlib("):
                        continue
                    if richdep.is_rich(d.name) or len(u.providers(d.name, d.flags, d.evr)) > 1:
                        waiting.append((p, kind, d))
                        continue
                    todo += _satisfy(s, p, kind, d)
        if waiting:
            p, kind, d = waiting.pop(0)
            todo += _satisfy(s, p, kind, d)
            continue
        for p in list(s.chosen.values()):
            for d in p.deps.get("requires", ()):
                if richdep.is_rich(d.name) and not s.holds(_parse_dep(d)):
                    todo += _satisfy(s, p, "requires", d)
        if not todo:
            break
    _check_conflicts(s)
    return Resolution(sorted(s.chosen.values(), key=lambda p: p.name), s.why, s.rule)


def _satisfy(s: _Solver, p: RpmPackage, kind: str, d: Dep) -> list[RpmPackage]:
    """Choose and add what p's dependency d needs; the newly added packages (whose own
    dependencies are next). A weak dependency nothing satisfies is skipped."""
    text = d.name if not d.flags else f"{d.name} {d.flags} {d.evr}"
    try:
        new = s.satisfy(_parse_dep(d), p.name, text)
    except ResolveError:
        if kind != "requires":
            return []
        raise
    return [q for n in new for q in s.add(n, f"{kind} {text}", p.name)]


def _check_conflicts(s: _Solver) -> None:
    for p in s.chosen.values():
        for kind in ("conflicts", "obsoletes"):
            for d in p.deps.get(kind, ()):
                hits = ([q for q in s.provided(richdep.Atom(d.name, d.flags, d.evr))]
                        if kind == "conflicts" else
                        [q for q in s.u.named(d) if q.name in s.chosen])
                hits = [q for q in hits if q.name != p.name]
                if hits:
                    raise ResolveError(f"{p.name} {kind} {hits[0].name} ({s.reason(hits[0].name)}); "
                                       f"both are needed")
