"""rpm-md metadata read as dnf reads it: a repository indexed by createrepo_c from packages
rpmbuild made, queried with `dnf repoquery` (libsolv's reading of the same files)."""

from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path

import pytest
from rpmtools import build_rpm, make_repo

from rdforge.errors import FormatError
from rdforge.formats.rpmmd import parse_filelists, parse_primary, parse_repomd

OPS = {"EQ": "=", "LT": "<", "LE": "<=", "GT": ">", "GE": ">="}


def spec(name: str, version: str = "1.0", release: str = "1", epoch: str = "",
         deps: str = "", files: str = "") -> str:
    return (f"Name: {name}\nVersion: {version}\nRelease: {release}\n"
            + (f"Epoch: {epoch}\n" if epoch else "")
            + f"Summary: {name}\nLicense: MIT\nBuildArch: x86_64\n{deps}\n"
            f"%description\n{name}\n%install\nmkdir -p %{{buildroot}}/usr/bin\n"
            f"printf '{name}' > %{{buildroot}}/usr/bin/{name}\n"
            f"%files\n/usr/bin/{name}\n{files}\n")


PACKAGES = {
    "rdf-lib": spec("rdf-lib", "1.2", "3.fc41", deps="Provides: libfoo.so.1()(64bit)"),
    "rdf-app": spec("rdf-app", "2.0~rc1", "1.fc41", deps="\n".join([
        "Requires: libfoo.so.1()(64bit)", "Requires: rdf-lib >= 1.0", "Requires: /usr/bin/rdf-a",
        "Requires: (rdf-a or rdf-b)", "Requires(pre): rdf-lib", "Recommends: rdf-extra",
        "Conflicts: rdf-old < 2", "Obsoletes: rdf-older <= 1:1.0-1", "Requires: rdf-a = 1:3^git2"])),
    "rdf-a": spec("rdf-a", "3^git2", "1", epoch="1"),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("rpmbuild") and shutil.which("createrepo_c")):
        pytest.skip("rpm and createrepo-c are not installed (setup.sh installs them)")
    top = tmp_path_factory.mktemp("rpmmd")
    (top / "repo" / "Packages").mkdir(parents=True)
    for name, text in PACKAGES.items():
        rpm = build_rpm(text, top / "build" / name)
        shutil.copy(rpm, top / "repo" / "Packages")
    return make_repo(top / "repo", None)


def _dnf(repo: Path, root: Path, *args: str) -> list[str]:
    out = subprocess.run(["dnf", "-q", f"--installroot={root}", "--releasever=test",
                          "--setopt=reposdir=/dev/null", f"--repofrompath=t,file://{repo}",
                          "--repo=t", "--setopt=t.gpgcheck=0", *args],
                         check=True, capture_output=True, text=True).stdout
    return sorted(x for x in out.splitlines() if x)


@pytest.mark.integration
def test_packages_and_dependencies_as_dnf_reads_them(repo: Path, tmp_path: Path) -> None:
    if not shutil.which("dnf"):
        pytest.skip("dnf is not installed (setup.sh installs it)")
    files = parse_repomd((repo / "repodata" / "repomd.xml").read_bytes())
    assert set(files) >= {"primary", "filelists", "other"}
    prim = files["primary"]
    pkgs = parse_primary(lzma.decompress((repo / prim.location).read_bytes()))
    theirs = _dnf(repo, tmp_path, "repoquery", "--qf", "%{name} %{evr} %{arch} %{location}")
    assert sorted(f"{p.name} {p.evr} {p.arch} {p.location}" for p in pkgs) == theirs
    for p in pkgs:
        for kind in ("provides", "requires", "conflicts", "obsoletes", "recommends"):
            ours = sorted({f"{d.name} {OPS[d.flags]} {d.evr}" if d.flags else d.name
                           for d in p.deps.get(kind, ())})
            assert ours == _dnf(repo, tmp_path, "repoquery", f"--{kind}", p.name), (p.name, kind)
    owners = parse_filelists(lzma.decompress((repo / files["filelists"].location).read_bytes()))
    for p in pkgs:
        ours = sorted(f for f, names in owners.items() if p.name in names)
        assert ours == _dnf(repo, tmp_path, "repoquery", "-l", p.name), p.name
    app = next(p for p in pkgs if p.name == "rdf-app")
    assert any(d.pre and d.name == "rdf-lib" for d in app.deps["requires"])
    assert "/usr/bin/rdf-app" in app.files


def test_hostile_or_broken_metadata_is_one_format_error() -> None:
    ns = 'xmlns="http://linux.duke.edu/metadata/repo"'
    bad = [b"<repomd", b"<other/>",
           f'<repomd {ns}><data type="primary"><location href="../x"/>'
           '<checksum type="sha256">ab</checksum></data></repomd>'.encode(),
           f'<repomd {ns}><data type="primary"><location href="https://evil/x"/>'
           '<checksum type="sha256">ab</checksum></data></repomd>'.encode(),
           f'<repomd {ns}><data type="primary"><location href="repodata/p.xml"/>'
           '<checksum type="md5">ab</checksum></data></repomd>'.encode(),
           b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
           b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
           b'<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
           b'<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;">'
           b']><repomd>&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;</repomd>']
    for data in bad:
        with pytest.raises(FormatError):
            parse_repomd(data)
    with pytest.raises(FormatError, match="not an rpm-md primary.xml"):
        parse_primary(b"<metadata/>")
