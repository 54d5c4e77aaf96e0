"""Where several packages could satisfy a dependency: rdforge's choice beside dnf's
(libsolv's) on a repository made for it, case by case. Where the two differ the test says
so and why, rather than hiding it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rpmtools import build_rpm, make_repo

from rdforge.formats.rpmmd import parse_primary, parse_repomd
from rdforge.sources.rpmmd import decompress
from rdforge.sources.rpmresolve import RpmUniverse, resolve

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (shutil.which("rpmbuild") and shutil.which("dnf")
                                      and shutil.which("createrepo_c")),
                                 reason="rpm, createrepo-c and dnf: setup.sh installs them")]


def spec(name: str, deps: str = "", files: tuple[str, ...] = ()) -> str:
    paths = [f"/usr/share/{name}/x", *files]
    mk = "\n".join(f"mkdir -p %{{buildroot}}{Path(p).parent}\nprintf x > %{{buildroot}}{p}"
                   for p in paths)
    return (f"Name: {name}\nVersion: 1\nRelease: 1\nSummary: t\nLicense: MIT\nBuildArch: noarch\n"
            f"{deps}\n%description\nt\n%install\n{mk}\n%files\n" + "\n".join(paths) + "\n")


REPO = {
    "zsh": spec("zsh", "Provides: shell"), "ksh": spec("ksh", "Provides: shell"),
    "tool-a": spec("tool-a", files=("/usr/bin/tool",)),
    "tool-bb": spec("tool-bb", files=("/usr/bin/tool",)),
    "lib-old": spec("lib-old", "Provides: lib = 1"), "lib-new": spec("lib-new", "Provides: lib = 3"),
    "app-shell": spec("app-shell", "Requires: shell"),
    "app-or": spec("app-or", "Requires: (zsh or ksh)"),
    "app-file": spec("app-file", "Requires: /usr/bin/tool"),
    "app-ver": spec("app-ver", "Requires: lib >= 2"),
    "app-two": spec("app-two", "Requires: shell\nRequires: zsh"),
}
CASES = ["app-shell", "app-or", "app-file", "app-ver", "app-two"]
# Known differences: case -> (rdforge's extra packages, dnf's extra packages, why).
DIFFERENCES: dict[str, tuple[set[str], set[str], str]] = {}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("choice")
    (top / "repo" / "Packages").mkdir(parents=True)
    for name, text in REPO.items():
        shutil.copy(build_rpm(text, top / "build" / name), top / "repo" / "Packages")
    return make_repo(top / "repo", None)


def _dnf(repo: Path, root: Path, name: str) -> set[str]:
    out = subprocess.run(["dnf", f"--installroot={root}", "--releasever=test",
                          "--setopt=reposdir=/dev/null", f"--repofrompath=t,file://{repo}",
                          "--repo=t", "--setopt=t.gpgcheck=0", "--setopt=install_weak_deps=False",
                          "--assumeno", "install", name], capture_output=True, text=True).stdout
    return set(re.findall(r"^ (\S+)\s+noarch\s+\S+\s+t\s", out, re.M))


@pytest.mark.parametrize("case", CASES)
def test_provider_choice_beside_dnf(repo: Path, tmp_path: Path, case: str) -> None:
    primary = parse_repomd((repo / "repodata/repomd.xml").read_bytes())["primary"]
    pkgs = parse_primary(decompress((repo / primary.location).read_bytes(), primary.location, "t"))
    ours = {p.name for p in resolve(RpmUniverse(pkgs), [case]).packages}
    theirs = _dnf(repo, tmp_path / "root", case)
    assert theirs, "dnf chose nothing"
    extra_ours, extra_theirs, _why = DIFFERENCES.get(case, (set(), set(), ""))
    assert (ours - theirs, theirs - ours) == (extra_ours, extra_theirs), (ours, theirs)
