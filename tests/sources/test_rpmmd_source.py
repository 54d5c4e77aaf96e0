"""The rpm-md package source: what it accepts and refuses, checked beside dnf (with
repo_gpgcheck and gpgcheck on) and rpmkeys on the same signed repository."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from rpmtools import SigningKey, build_rpm, make_key, make_repo, sign_rpm

from rdforge.errors import HashMismatch, SignatureError, SourceError
from rdforge.formats.rpmmd import parse_repomd
from rdforge.sources.cache import BlobCache
from rdforge.sources.rpmmd import RpmMdRepo, decompress

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (shutil.which("rpmbuild") and shutil.which("createrepo_c")
                                      and shutil.which("dnf")),
                                 reason="rpm, createrepo-c and dnf: setup.sh installs them")]

SPEC = """Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: t\nLicense: MIT\nBuildArch: x86_64
%description\nt\n%install\nmkdir -p %{{buildroot}}/usr/bin
printf '{name}' > %{{buildroot}}/usr/bin/{name}\n%files\n/usr/bin/{name}\n"""


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return make_key(tmp_path_factory.mktemp("gnupg"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, key: SigningKey) -> dict[str, Path]:
    top = tmp_path_factory.mktemp("rpms")
    out = {n: sign_rpm(build_rpm(SPEC.format(name=n), top / n), key) for n in ("one", "two")}
    out["unsigned"] = build_rpm(SPEC.format(name="unsigned"), top / "unsigned")
    return out


def _repo(tmp: Path, key: SigningKey, rpms: list[Path], compress: str = "xz") -> Path:
    (tmp / "repo" / "Packages").mkdir(parents=True)
    for r in rpms:
        shutil.copy(r, tmp / "repo" / "Packages")
    return make_repo(tmp / "repo", key, compress)


def _source(repo: Path, key: SigningKey, tmp: Path, offline: bool = False) -> RpmMdRepo:
    return RpmMdRepo(f"file://{repo}", key.keyring, offline=offline,
                     blobs=BlobCache(tmp / "cache"))


def _dnf_accepts(repo: Path, key: SigningKey, root: Path) -> bool:
    r = subprocess.run(["dnf", "-q", f"--installroot={root}", "--releasever=test",
                        "--setopt=reposdir=/dev/null", f"--repofrompath=t,file://{repo}",
                        "--repo=t", "--setopt=t.gpgcheck=1", "--setopt=t.repo_gpgcheck=1",
                        f"--setopt=t.gpgkey=file://{key.armored}", "-y", "install",
                        "--downloadonly", f"--downloaddir={root}/dl", "one"],
                       capture_output=True, text=True)
    return r.returncode == 0


@pytest.mark.parametrize("compress", ["xz", "gz", "bz2"])
def test_a_signed_repository_is_read_and_its_packages_fetched(
        tmp_path: Path, key: SigningKey, built: dict[str, Path], compress: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDFORGE_CACHE", str(tmp_path / "cache"))
    repo = _repo(tmp_path, key, [built["one"], built["two"]], compress)
    assert _dnf_accepts(repo, key, tmp_path / "root")  # the reference agrees it is sound
    src = _source(repo, key, tmp_path)
    pkgs = {p.name: p for p in src.packages()}
    assert sorted(pkgs) == ["one", "two"]
    for name in ("one", "two"):
        assert src.fetch(pkgs[name]).read_bytes() == built[name].read_bytes()
    # Offline, with the repository gone: from the cache, still verified.
    shutil.rmtree(repo)
    offline = _source(repo, key, tmp_path, offline=True)
    assert sorted(p.name for p in offline.packages()) == ["one", "two"]
    assert offline.fetch(pkgs["two"]).read_bytes() == built["two"].read_bytes()


def test_unsigned_or_foreign_metadata_is_refused(tmp_path: Path, key: SigningKey,
                                                built: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDFORGE_CACHE", str(tmp_path / "cache"))
    repo = _repo(tmp_path, key, [built["one"]])
    asc = repo / "repodata" / "repomd.xml.asc"
    other = make_key(tmp_path / "other", "someone else")
    subprocess.run(["gpg", "--batch", "--yes", "--armor", "--detach-sign", "--output", str(asc),
                    str(repo / "repodata" / "repomd.xml")], check=True, env=other.env)
    with pytest.raises(SignatureError, match="repomd.xml: bad or missing signature"):
        _source(repo, key, tmp_path).packages()
    assert not _dnf_accepts(repo, key, tmp_path / "root")
    asc.unlink()
    with pytest.raises(SignatureError, match="publishes no signature"):
        _source(repo, key, tmp_path).packages()
    assert not _dnf_accepts(repo, key, tmp_path / "root2")


def test_tampered_primary_or_package_is_refused(tmp_path: Path, key: SigningKey,
                                                built: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDFORGE_CACHE", str(tmp_path / "cache"))
    repo = _repo(tmp_path, key, [built["one"], built["unsigned"]])
    files = parse_repomd((repo / "repodata" / "repomd.xml").read_bytes())
    src = _source(repo, key, tmp_path)
    pkgs = {p.name: p for p in src.packages()}
    # A package signed by nobody, listed with its true checksum: refused, as by rpmkeys when
    # it requires a signature (as dnf's gpgcheck does).
    with pytest.raises(SignatureError, match="the package is not signed"):
        src.fetch(pkgs["unsigned"])
    db = tmp_path / "db"
    subprocess.run(["rpmkeys", "--dbpath", str(db), "--import", str(key.armored)], check=True)
    assert subprocess.run(["rpmkeys", "--dbpath", str(db), "--define", "_pkgverify_level signature",
                           "--checksig", str(repo / pkgs["unsigned"].location)],
                          capture_output=True).returncode != 0
    # The file swapped for another package: its checksum no longer matches primary's.
    shutil.copy(built["two"], repo / pkgs["one"].location)
    with pytest.raises(HashMismatch):
        _source(repo, key, tmp_path / "fresh").fetch(pkgs["one"])
    # primary.xml changed after signing: its checksum no longer matches repomd.xml's.
    prim = repo / files["primary"].location
    prim.write_bytes(prim.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(HashMismatch):
        _source(repo, key, tmp_path / "fresh2").packages()


def test_offline_without_a_cache_names_what_is_missing(tmp_path: Path, key: SigningKey,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDFORGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SourceError, match="not cached for an offline build"):
        _source(tmp_path / "nowhere", key, tmp_path, offline=True).packages()


def test_zstd_metadata_and_decompression_bombs() -> None:
    import zstandard

    from rdforge.errors import FormatError

    xml = b"<metadata/>"
    assert decompress(zstandard.ZstdCompressor().compress(xml), "p.xml.zst", "t") == xml
    with pytest.raises(FormatError, match="corrupt compressed metadata"):
        decompress(b"garbage", "p.xml.xz", "t")
    with pytest.raises(FormatError, match="unsupported metadata compression"):
        decompress(xml, "p.xml.lz4", "t")
