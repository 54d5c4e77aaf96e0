"""Deterministic dependency resolution over Depends and Pre-Depends (Debian policy 7).

Recommends are not followed (an initrd wants the smallest closure). Among versions of one name
the highest wins, as apt's default pinning does. Alternatives: one already chosen wins, else the
first that can be satisfied. Virtual packages: a provider already chosen, then a configured
preference, then the real package of that name, then providers by Priority and name (as apt
ranks them).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from rdforge.errors import ResolveError
from rdforge.sources.archive import Package
from rdforge.sources.version import compare, satisfies

_REL = re.compile(
    r"^\s*([a-z0-9][a-z0-9+.-]*)(?::([a-z0-9-]+))?"  # name and architecture qualifier
    r"\s*(?:\(\s*([<>=]+)\s*([^)\s]+)\s*\))?"  # version relation
    r"\s*(?:\[[^]]*\])?\s*(?:<[^>]*>)?\s*$")  # architecture list and build profiles


_PRIORITY = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


@dataclass(frozen=True)
class Relation:
    name: str
    arch: str | None
    op: str | None
    version: str | None

    def __str__(self) -> str:
        s = self.name + (f":{self.arch}" if self.arch else "")
        return s + (f" ({self.op} {self.version})" if self.op else "")


def parse_relations(field: str) -> list[list[Relation]]:
    """'a (>= 1) | b, c:any' -> [[a>=1, b], [c]]."""
    out: list[list[Relation]] = []
    if not field.strip():
        return out
    for group in field.split(","):
        alts: list[Relation] = []
        for alt in group.split("|"):
            m = _REL.match(alt)
            if not m:
                raise ResolveError(f"cannot parse dependency {alt.strip()!r}")
            alts.append(Relation(m.group(1), m.group(2), m.group(3), m.group(4)))
        if alts:
            out.append(alts)
    return out


class Universe:
    """The candidate version of every name plus who provides what."""

    def __init__(self, packages: list[Package], arch: str = "amd64") -> None:
        self.arch = arch
        self.candidates: dict[str, Package] = {}
        for p in packages:
            cur = self.candidates.get(p.name)
            if cur is None or compare(p.version, cur.version) > 0:
                self.candidates[p.name] = p
        self.providers: dict[str, list[tuple[Package, str | None]]] = {}
        for p in self.candidates.values():
            for alts in parse_relations(p.provides):
                r = alts[0]
                self.providers.setdefault(r.name, []).append((p, r.version))
        for lst in self.providers.values():
            lst.sort(key=lambda t: (_PRIORITY.get(t[0].priority, 9), t[0].name))

    def _arch_ok(self, rel: Relation, pkg: Package) -> bool:
        # One architecture per image: ':any', ':native' and our own name all mean it.
        return rel.arch in (None, "any", "native", self.arch) or pkg.arch == "all"

    def matches(self, rel: Relation, pkg: Package) -> bool:
        """Whether pkg (as chosen) satisfies rel, directly or through Provides."""
        if not self._arch_ok(rel, pkg):
            return False
        if pkg.name == rel.name:
            return rel.op is None or satisfies(pkg.version, rel.op, rel.version or "")
        for alts in parse_relations(pkg.provides):
            pr = alts[0]
            if pr.name == rel.name:
                if rel.op is None:
                    return True
                if pr.version is not None and satisfies(pr.version, rel.op, rel.version or ""):
                    return True
        return False

    def options(self, rel: Relation, prefer: tuple[str, ...]) -> list[Package]:
        """Packages that would satisfy rel, best first."""
        out: list[Package] = []
        real = self.candidates.get(rel.name)
        provs = [p for p, _ in self.providers.get(rel.name, []) if self.matches(rel, p)]
        preferred = [p for p in provs if p.name in prefer]
        out += sorted(preferred, key=lambda p: prefer.index(p.name))
        if real is not None and self.matches(rel, real):
            out.append(real)
        out += [p for p in provs if p not in out]
        return out


@dataclass
class Resolution:
    packages: list[Package]  # sorted by name
    why: dict[str, str]  # name -> the package (or "requested") that pulled it in
    rule: dict[str, str] = field(default_factory=dict)  # name -> "Depends: RELATION" that did


def resolve(universe: Universe, requested: list[str], exclude: tuple[str, ...] = (),
            prefer: tuple[str, ...] = ()) -> Resolution:
    """The closure of `requested` under Depends and Pre-Depends. Packages in `exclude` are
    never installed and dependencies naming them count as satisfied (as a distribution's
    image builder removes packages that an image does not need at run time)."""
    chosen: dict[str, Package] = {}
    why: dict[str, str] = {}
    queue: deque[Package] = deque()

    def chain(name: str) -> str:
        seq = [name]
        while why.get(seq[-1], "requested") != "requested" and len(seq) < 30:
            seq.append(why[seq[-1]])
        return " <- ".join(seq)

    rule: dict[str, str] = {}
    for name in requested:
        rel = parse_relations(name)[0][0]
        opts = universe.options(rel, prefer)
        if not opts:
            raise ResolveError(f"package {name!r} is not in the archive")
        pkg = opts[0]
        if pkg.name not in chosen:
            chosen[pkg.name] = pkg
            why[pkg.name] = "requested"
            queue.append(pkg)

    while queue:
        pkg = queue.popleft()
        for kind, text in (("Pre-Depends", pkg.pre_depends), ("Depends", pkg.depends)):
            for alts in parse_relations(text):
                if any(universe.matches(r, c) for r in alts for c in _chosen_for(chosen, r)):
                    continue
                if any(r.name in exclude for r in alts):
                    continue  # removed on purpose: the dependency counts as satisfied
                picked: Package | None = None
                for r in alts:
                    if r.name in exclude:
                        continue
                    for cand in universe.options(r, prefer):
                        if cand.name in exclude:
                            continue
                        if cand.name in chosen:
                            continue  # chosen in another version that does not match
                        picked = cand
                        break
                    if picked:
                        break
                if picked is None:
                    wanted = " | ".join(str(r) for r in alts)
                    held = [f"{c.name} {c.version}" for r in alts for c in _chosen_for(chosen, r)]
                    extra = f"; have {', '.join(held)}" if held else ""
                    other = [f"{r.name} {c.version}" for r in alts
                             if (c := universe.candidates.get(r.name)) is not None
                             and not universe.matches(r, c)]
                    if other and not held:
                        extra = f": no version satisfies it (the archive has {', '.join(other)})"
                    elif not held and not any(universe.options(r, prefer) for r in alts):
                        extra = ": the archive has no such package"
                    raise ResolveError(f"cannot satisfy {wanted} for {chain(pkg.name)}{extra}")
                chosen[picked.name] = picked
                why[picked.name] = pkg.name
                rule[picked.name] = f"{kind}: {' | '.join(str(r) for r in alts)}"
                queue.append(picked)
    return Resolution(sorted(chosen.values(), key=lambda p: p.name), why, rule)


def _chosen_for(chosen: dict[str, Package], rel: Relation) -> list[Package]:
    out = []
    if rel.name in chosen:
        out.append(chosen[rel.name])
    out += [p for p in chosen.values() if p.name != rel.name and rel.name in p.provides]
    return out
