import pytest

from rdforge.errors import ResolveError
from rdforge.sources.archive import Package
from rdforge.sources.resolve import Universe, parse_relations, resolve


def pkg(name: str, version: str = "1", depends: str = "", provides: str = "",
        pre: str = "", priority: str = "optional") -> Package:
    return Package(name, version, "amd64", f"pool/{name}.deb", "0" * 64, 1, depends, pre,
                   provides, priority=priority)


def names(pkgs: list[Package]) -> list[str]:
    return [p.name for p in pkgs]


def test_parse_relations() -> None:
    rels = parse_relations("a (>= 1.0) | b:any, c [amd64], d:amd64 (<< 2)")
    assert [[str(r) for r in alts] for alts in rels] == [["a (>= 1.0)", "b:any"], ["c"],
                                                        ["d:amd64 (<< 2)"]]


def test_highest_version_and_version_constraints() -> None:
    u = Universe([pkg("app", depends="lib (>= 2)"), pkg("lib", "1"), pkg("lib", "2.1")])
    assert [(p.name, p.version) for p in resolve(u, ["app"]).packages] == [("app", "1"),
                                                                            ("lib", "2.1")]
    u = Universe([pkg("app", depends="lib (>= 3)"), pkg("lib", "2.1")])
    with pytest.raises(ResolveError, match=r"lib \(>= 3\) for app"):
        resolve(u, ["app"])


def test_alternatives_prefer_chosen_then_first() -> None:
    u = Universe([pkg("app", depends="x | y"), pkg("x"), pkg("y")])
    assert names(resolve(u, ["app"]).packages) == ["app", "x"]
    assert names(resolve(u, ["y", "app"]).packages) == ["app", "y"]


def test_virtual_by_priority_and_preference() -> None:
    u = Universe([pkg("base", pre="awk"), pkg("gawk", provides="awk"),
                  pkg("mawk", provides="awk", priority="required")])
    assert names(resolve(u, ["base"]).packages) == ["base", "mawk"]
    assert names(resolve(u, ["base"], prefer=("gawk",)).packages) == ["base", "gawk"]


def test_versioned_provides() -> None:
    u = Universe([pkg("app", depends="virt (>= 2)"), pkg("old", provides="virt (= 1)"),
                  pkg("new", provides="virt (= 2)")])
    assert names(resolve(u, ["app"]).packages) == ["app", "new"]


def test_unknown_package_and_chain() -> None:
    u = Universe([pkg("a", depends="b"), pkg("b", depends="c")])
    with pytest.raises(ResolveError, match="'zzz' is not in the archive"):
        resolve(u, ["zzz"])
    with pytest.raises(ResolveError, match="cannot satisfy c for b <- a"):
        resolve(u, ["a"])


def test_removed_package_counts_as_satisfied() -> None:
    u = Universe([pkg("a", depends="b, c"), pkg("b"), pkg("c")])
    assert names(resolve(u, ["a"], exclude=("c",)).packages) == ["a", "b"]


def test_deterministic() -> None:
    ps = [pkg(f"p{i}", depends=f"p{i + 1} | q{i}") for i in range(50)] + [pkg("p50")]
    ps += [pkg(f"q{i}") for i in range(50)]
    assert names(resolve(Universe(ps), ["p0"]).packages) == names(
        resolve(Universe(list(reversed(ps))), ["p0"]).packages)


def test_an_unsatisfiable_version_names_what_the_archive_has() -> None:
    u = Universe([pkg("tool", depends="bash (>= 99)"), pkg("bash", "5.2.37-2")])
    with pytest.raises(ResolveError, match=r"cannot satisfy bash \(>= 99\) for tool: no version "
                                           r"satisfies it \(the archive has bash 5\.2\.37-2\)"):
        resolve(u, ["tool"])
    u = Universe([pkg("tool", depends="nosuch")])
    with pytest.raises(ResolveError, match="nosuch for tool: the archive has no such package"):
        resolve(u, ["tool"])


def test_the_unknown_kernel_hint_names_the_newest_by_dpkgs_order() -> None:
    from rdforge.config import Config
    from rdforge.errors import KernelError
    from rdforge.sources.plan import kernel_package

    versions = ["6.12.9-1", "6.12.10-1", "6.12.38-1", "6.12.57-1", "6.12.48-1", "6.12.117-1"]
    u = Universe([pkg(f"linux-image-{v.split('-')[0]}+deb13-amd64", v) for v in versions])
    with pytest.raises(KernelError, match=r"the archive has: 6\.12\.10\+deb13-amd64, 6\.12\.38\+deb13-amd64, "
                       r"6\.12\.48\+deb13-amd64, 6\.12\.57\+deb13-amd64, "
                       r"6\.12\.117\+deb13-amd64\)"):
        kernel_package(u, Config(kernel_version="9.9"))
