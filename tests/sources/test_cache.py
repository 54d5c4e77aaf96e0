import hashlib
from pathlib import Path

import pytest

from rdforge.errors import HashMismatch
from rdforge.sources.cache import BlobCache


def test_corrupt_or_truncated_entry_is_fetched_again(tmp_path: Path) -> None:
    src = tmp_path / "pkg.deb"
    src.write_bytes(b"package content" * 100)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = BlobCache(tmp_path / "cache")
    p = cache.fetch(src.as_uri(), sha, src.stat().st_size)
    p.write_bytes(b"package content" * 50)  # truncated
    assert cache.lookup(sha, src.stat().st_size) is None
    p = cache.fetch(src.as_uri(), sha, src.stat().st_size)
    assert p.read_bytes() == src.read_bytes()
    p.write_bytes(b"X" * src.stat().st_size)  # same size, wrong content
    assert cache.fetch(src.as_uri(), sha, src.stat().st_size).read_bytes() == src.read_bytes()


def test_hash_mismatch_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "pkg.deb"
    src.write_bytes(b"abc")
    cache = BlobCache(tmp_path / "cache")
    with pytest.raises(HashMismatch, match="does not match"):
        cache.fetch(src.as_uri(), "0" * 64, 3)
    assert not any((tmp_path / "cache").rglob("*0000*"))
