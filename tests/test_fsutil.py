"""Atomic writes and what killed writers leave behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdforge import fsutil


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_a_killed_writers_temporary_is_swept_a_live_ones_is_not(tmp_path: Path) -> None:
    out = tmp_path / "initrd.img"
    dead = tmp_path / ".initrd.img.tmp-dead"
    dead.write_bytes(b"half an image")
    _age(dead, 60)
    # A live writer: another process holding the lock on its temporary.
    live = tmp_path / ".initrd.img.tmp-live"
    live.write_bytes(b"being written")
    _age(live, 60)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl,os,sys,time\n"
                               f"fd=os.open({str(live)!r},os.O_RDONLY)\n"
                               "fcntl.flock(fd,fcntl.LOCK_EX)\nprint('locked',flush=True)\n"
                               "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        fsutil.write_atomic(out, b"new image")
        assert out.read_bytes() == b"new image"
        assert not dead.exists() and live.exists()
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".initrd.img.tmp-live", "initrd.img"]


def test_killed_work_directories_are_swept(tmp_path: Path) -> None:
    held = tmp_path / ".kernel-alive"
    held.mkdir()
    fd = fsutil.hold_lock(held)
    dead = tmp_path / ".kernel-dead"
    dead.mkdir()
    os.close(fsutil.hold_lock(dead))  # its process is gone: nobody holds the lock
    _age(dead / ".in-use", 60)
    young = tmp_path / ".kernel-young"
    young.mkdir()  # no lock yet, just made
    try:
        assert fsutil.sweep_work_dirs(tmp_path, ".kernel-") == [".kernel-dead"]
        assert held.exists() and young.exists() and not dead.exists()
    finally:
        os.close(fd)


def test_image_manifest_and_lock_change_together_or_not_at_all(tmp_path: Path) -> None:
    from rdforge.errors import RdforgeError
    from rdforge.outputs.initrd import commit_together

    img, man = tmp_path / "initrd.img", tmp_path / "initrd.img.manifest.json"
    img.write_bytes(b"old image")
    man.write_bytes(b"old manifest")
    (tmp_path / "lockdir").mkdir()
    with pytest.raises(RdforgeError, match="is a directory"):
        commit_together([(img, b"new image"), (man, b"new manifest"), (tmp_path / "lockdir", b"x")])
    assert img.read_bytes() == b"old image" and man.read_bytes() == b"old manifest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["initrd.img", "initrd.img.manifest.json",
                                                          "lockdir"]
    commit_together([(img, b"new image"), (man, b"new manifest"), (tmp_path / "rdforge.lock", b"l")])
    assert img.read_bytes() == b"new image" and (tmp_path / "rdforge.lock").read_bytes() == b"l"
