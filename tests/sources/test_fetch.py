"""Where pinned packages come from: local file, --deb-dir (by sha256), cache, archives in turn."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rdforge.errors import HashMismatch, SourceError
from rdforge.sources.archive import Package
from rdforge.sources.cache import BlobCache
from rdforge.sources.fetch import Fetcher


def _pkg(data: bytes, filename: str = "pool/main/h/hello/hello_1_amd64.deb", **kw: str) -> Package:
    return Package("hello", "1", "amd64", filename, hashlib.sha256(data).hexdigest(), len(data),
                   **kw)  # type: ignore[arg-type]


def test_a_lock_entry_is_fetched_from_whichever_archive_has_its_path(tmp_path: Path) -> None:
    data = b"the package"
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "pool/main/h/hello").mkdir(parents=True)
    (second / "pool/main/h/hello/hello_1_amd64.deb").write_bytes(data)
    first.mkdir()
    f = Fetcher(archives=lambda: [f"file://{first}", f"file://{second}"],
                blobs=BlobCache(tmp_path / "cache"))
    got = f.one(_pkg(data))
    assert got.read_bytes() == data and got.is_relative_to(tmp_path / "cache")


def test_wrong_bytes_at_the_path_are_refused_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "a/pool/main/h/hello").mkdir(parents=True)
    (tmp_path / "a/pool/main/h/hello/hello_1_amd64.deb").write_bytes(b"something else")
    f = Fetcher(archives=lambda: [f"file://{tmp_path / 'a'}"], blobs=BlobCache(tmp_path / "c"))
    with pytest.raises(HashMismatch):
        f.one(_pkg(b"the package"))


def test_deb_dir_is_matched_by_sha256_and_comes_before_the_archive(tmp_path: Path) -> None:
    data = b"pinned bytes"
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "renamed-anything.deb").write_bytes(data)
    (debs / "other.deb").write_bytes(b"not it")
    asked: list[str] = []

    def archives() -> list[str]:
        asked.append("yes")
        return []

    f = Fetcher(deb_dir=debs, archives=archives, blobs=BlobCache(tmp_path / "c"))
    assert f.one(_pkg(data)) == debs / "renamed-anything.deb"
    assert asked == []  # the archive was never consulted


def test_offline_miss_names_the_package_and_every_place_looked(tmp_path: Path) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    f = Fetcher(offline=True, deb_dir=debs, blobs=BlobCache(tmp_path / "c"))
    with pytest.raises(SourceError, match=r"hello_1_amd64: not in the cache nor in .*debs "
                                          r"\(by sha256\), and --offline forbids fetching"):
        f.one(_pkg(b"x"))


def test_no_archive_has_it(tmp_path: Path) -> None:
    f = Fetcher(archives=lambda: [f"file://{tmp_path}/nowhere"], blobs=BlobCache(tmp_path / "c"))
    with pytest.raises(SourceError, match="no archive has pool/main/h/hello/hello_1_amd64.deb"):
        f.one(_pkg(b"x"))


def test_a_local_file_changed_since_indexing_is_refused(tmp_path: Path) -> None:
    deb = tmp_path / "x.deb"
    deb.write_bytes(b"changed")
    with pytest.raises(HashMismatch, match="differs from when it was indexed"):
        Fetcher(blobs=BlobCache(tmp_path / "c")).one(_pkg(b"original", local=str(deb)))
