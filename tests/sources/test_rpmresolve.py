"""rpm dependency resolution on small made-up repositories: each rule of the module's
docstring, one test each."""

from __future__ import annotations

import pytest

from rdforge.errors import ResolveError
from rdforge.formats.rpmmd import Dep, RpmPackage
from rdforge.sources.rpmresolve import RpmUniverse, overlaps, resolve

FLAGS = {"=": "EQ", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE"}


def dep(text: str) -> Dep:
    if text.startswith("("):
        return Dep(text)
    parts = text.split()
    if len(parts) == 1:
        return Dep(parts[0])
    epoch, _, rest = parts[2].rpartition(":")
    ver, _, rel = rest.partition("-")
    return Dep(parts[0], FLAGS[parts[1]], epoch, ver, rel)


def pkg(name: str, version: str = "1.0", release: str = "1", arch: str = "x86_64",
        files: tuple[str, ...] = (), **deps: list[str]) -> RpmPackage:
    provides = [Dep(name, "EQ", "", version, release), *map(dep, deps.pop("provides", []))]
    return RpmPackage(name, arch, 0, version, release, "0" * 64, 1, f"Packages/{name}.rpm",
                      deps={"provides": tuple(provides),
                            **{k: tuple(map(dep, v)) for k, v in deps.items()}}, files=files)


def names(u: RpmUniverse, *asked: str, **kw: object) -> list[str]:
    return [p.name for p in resolve(u, list(asked), **kw).packages]  # type: ignore[arg-type]


def test_ranges_overlap_as_rpmdscompare() -> None:
    assert overlaps("EQ", "1.2-3", "GE", "1.0")
    assert not overlaps("EQ", "1.2-3", "LT", "1.2")
    assert overlaps("EQ", "1.2-3", "LE", "1.2")  # no release on one side: every release
    assert overlaps("", "", "GE", "9")  # an unversioned provide matches any version
    assert overlaps("EQ", "1:1.0-1", "GE", "2.0")  # the epoch wins
    assert not overlaps("EQ", "1.0-1", "GE", "1:0.5")
    assert overlaps("GT", "1.0", "LT", "3.0") and not overlaps("LT", "1.0", "GT", "2.0")


def test_newest_candidate_of_allowed_arches_and_versioned_requires() -> None:
    u = RpmUniverse([pkg("lib", "1.0"), pkg("lib", "2.0"), pkg("lib", "3.0", arch="i686"),
                     pkg("app", requires=["lib >= 2.0"])])
    r = resolve(u, ["app"])
    assert [(p.name, p.version) for p in r.packages] == [("app", "1.0"), ("lib", "2.0")]
    assert (r.why["lib"], r.rule["lib"]) == ("app", "requires lib GE 2.0")
    assert (r.why["app"], r.rule["app"]) == ("", "asked for")
    u = RpmUniverse([pkg("lib", "1.0"), pkg("app", requires=["lib >= 2.0"])])
    with pytest.raises(ResolveError, match="app requires lib GE 2.0, which no package provides"):
        resolve(u, ["app"])


def test_soname_and_file_dependencies_with_filelists_loaded_only_when_needed() -> None:
    calls: list[int] = []

    def filelists() -> dict[str, list[str]]:
        calls.append(1)
        return {"/usr/lib/x/helper": ["helpers"]}

    u = RpmUniverse([pkg("glibc", provides=["libc.so.6()(64bit)"]),
                     pkg("bash", files=("/usr/bin/bash",), provides=["/bin/sh"]),
                     pkg("helpers"),
                     pkg("app", requires=["libc.so.6()(64bit)", "/usr/bin/bash", "/bin/sh"])],
                    filelists=filelists)
    assert names(u, "app") == ["app", "bash", "glibc"] and calls == []
    u.candidates["app"].deps["requires"] += (Dep("/usr/lib/x/helper"),)
    assert names(u, "app") == ["app", "bash", "glibc", "helpers"] and calls == [1]


def test_rich_dependencies() -> None:
    base = [pkg("a"), pkg("b"), pkg("c"), pkg("d")]
    u = RpmUniverse([*base, pkg("x", requires=["(a or b)"])])
    assert names(u, "x") == ["a", "x"]
    u = RpmUniverse([*base, pkg("x", requires=["(a or b)", "b"])])
    assert names(u, "x") == ["b", "x"]  # b satisfies the or: a is not added
    u = RpmUniverse([*base, pkg("x", requires=["(c if d)"])])
    assert names(u, "x") == ["x"]
    u = RpmUniverse([*base, pkg("x", requires=["(c if d)", "(d unless a)"])])
    assert names(u, "x") == ["c", "d", "x"]  # d came later: the condition holds then
    u = RpmUniverse([*base, pkg("k1", provides=["kmod"]), pkg("k2", provides=["kmod", "fw"]),
                     pkg("x", requires=["(kmod with fw)"])])
    assert names(u, "x") == ["k2", "x"]


def test_weak_dependencies_only_when_asked() -> None:
    u = RpmUniverse([pkg("extra"), pkg("x", recommends=["extra", "absent"])])
    assert names(u, "x") == ["x"]
    assert names(u, "x", weak=True) == ["extra", "x"]  # an absent recommendation is skipped


def test_provider_choice_is_deterministic() -> None:
    many = [pkg("zsh", provides=["shell"]), pkg("ksh", provides=["shell"]),
            pkg("shell-ng", provides=["shell"]), pkg("shell", version="0.1")]
    u = RpmUniverse([*many, pkg("x", requires=["shell"])])
    assert names(u, "x") == ["shell", "x"]  # the package named as the dependency
    u = RpmUniverse([*many[:3], pkg("x", requires=["shell"])])
    assert names(u, "x") == ["ksh", "x"]  # shortest name, then alphabetical
    assert names(u, "x", prefer=("zsh",)) == ["x", "zsh"]
    u = RpmUniverse([*many[:3], pkg("aaa", provides=["ksh"], obsoletes=["ksh"]),
                     pkg("x", requires=["shell"])])
    assert names(u, "x") == ["x", "zsh"]  # ksh is obsoleted by another candidate


def test_conflicts_and_obsoletes_between_chosen_packages_fail() -> None:
    u = RpmUniverse([pkg("a", conflicts=["b < 2"]), pkg("b"), pkg("x", requires=["a", "b"])])
    with pytest.raises(ResolveError, match="a conflicts b"):
        resolve(u, ["x"])
    u = RpmUniverse([pkg("a", conflicts=["b < 1"]), pkg("b"), pkg("x", requires=["a", "b"])])
    assert names(u, "x") == ["a", "b", "x"]
    u = RpmUniverse([pkg("new", obsoletes=["old"]), pkg("old"), pkg("x", requires=["new", "old"])])
    with pytest.raises(ResolveError, match="new obsoletes old"):
        resolve(u, ["x"])
