"""The vendor build in a build farm: no network, no cache, an unwritable HOME, the
committed lock and a directory of the pinned .debs give the networked build's bytes, and the
lock is left untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.sources import lock as lockfile
from rdforge.sources.cache import BlobCache

pytestmark = pytest.mark.integration


def _pinned_debs(lock: Path, dest: Path) -> None:
    """What a maintainer has after `apt-get download` of each pinned package=version."""
    lk = lockfile.read(lock)
    dest.mkdir()
    blobs = BlobCache()
    for p in lk.packages + ([lk.kernel] if lk.kernel else []):
        hit = blobs.lookup(p.sha256, p.size, verify=False)
        assert hit is not None
        shutil.copyfile(hit, dest / f"{p.name}_{p.version.replace(':', '%3a')}_{p.arch}.deb")


def test_farm_build_without_network_matches_the_online_build(tmp_path: Path,
                                                             default_build: Path) -> None:
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n (a network namespace) is not permitted here")
    src = tmp_path / "src"
    src.mkdir()
    lock = src / "rdforge.lock"
    shutil.copyfile(default_build.with_name("rdforge.lock"), lock)
    lock.chmod(0o444)
    before = (lock.read_bytes(), lock.stat().st_mtime_ns)
    _pinned_debs(lock, tmp_path / "debs")
    out = tmp_path / "out/initrd.img"
    out.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "RDFORGE_CACHE")}
    (tmp_path / "tmp").mkdir()
    # sbuild's HOME is /nonexistent, unwritable for its build user; root could create that,
    # so here HOME lies under a regular file
    (tmp_path / "file").write_text("")
    env.update(HOME=str(tmp_path / "file/home"), TMPDIR=str(tmp_path / "tmp"))
    r = subprocess.run(["unshare", "-n", sys.executable, "-m", "rdforge.cli", "build", "--locked",
                        "--offline", "--deb-dir", str(tmp_path / "debs"), "--lock", str(lock),
                        "-o", str(out), "-q"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert f"cache {tmp_path}/file/home/.cache/rdforge cannot be created" in r.stderr
    assert list((tmp_path / "tmp").iterdir()) == []  # the run's own cache went with it
    assert out.read_bytes() == default_build.read_bytes()
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before
    assert not out.with_name("initrd.img.lock").exists()


def test_offline_locked_build_names_a_missing_pinned_package(tmp_path: Path,
                                                             default_build: Path) -> None:
    lock = default_build.with_name("rdforge.lock")
    _pinned_debs(lock, tmp_path / "debs")
    victim = sorted((tmp_path / "debs").glob("bash_*.deb"))[0]
    victim.write_bytes(b"not the pinned bash")
    env = {**os.environ, "RDFORGE_CACHE": str(tmp_path / "empty-cache")}
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "build", "--locked", "--offline",
                        "--deb-dir", str(tmp_path / "debs"), "--lock", str(lock),
                        "-o", str(tmp_path / "initrd.img"), "-q"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 1
    assert r.stderr.startswith("rdforge: error: bash_") and "--offline forbids" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "initrd.img").exists()


def test_an_unchanged_lock_is_not_rewritten(tmp_path: Path, default_build: Path) -> None:
    lock = tmp_path / "rdforge.lock"
    shutil.copyfile(default_build.with_name("rdforge.lock"), lock)
    lock.chmod(0o444)  # a rewrite would replace the file (rename), making it 0644
    ino = lock.stat().st_ino
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "build", "--offline", "--lock",
                        str(lock), "-o", str(tmp_path / "initrd.img"), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert lock.stat().st_ino == ino
