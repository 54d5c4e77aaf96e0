"""Writing files so that a reader sees the old content or the new one, never a part."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write under a unique temporary name beside path, then rename into place: a failure
    leaves the old file intact, and concurrent writers never collide on a temporary name."""
    write_atomic_with(path, lambda f: f.write(data), mode)


def write_atomic_with(path: Path, write: Callable[[BinaryIO], object], mode: int = 0o644) -> None:
    """write_atomic for content that write(file) produces piece by piece."""
    tmp = stage_with(path, write, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def stage_with(path: Path, write: Callable[[BinaryIO], object], mode: int = 0o644) -> str:
    """Write content under a temporary name beside path and return that name; the caller
    renames it into place (os.replace) or discards it. While it is written, the file is
    locked: a temporary file nobody holds a lock on was left by a killed writer, and
    sweep_temporaries removes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        discard(tmp)
        raise
    return tmp


def stage(path: Path, data: bytes, mode: int = 0o644) -> str:
    return stage_with(path, lambda f: f.write(data), mode)


def discard(tmp: str) -> None:
    if os.path.exists(tmp):
        os.unlink(tmp)


# A temporary file this young may be one whose writer has not taken its lock yet (the lock
# follows its creation within microseconds).
SWEEP_MIN_AGE = 2.0


def sweep_temporaries(path: Path) -> list[str]:
    """Remove the temporary files a killed writer of path left beside it (no one holds
    their lock); returns their names."""
    return _sweep(path.parent, lambda name: name.startswith(f".{path.name}.tmp-"))


def sweep_dir_temporaries(directory: Path) -> list[str]:
    """Remove every temporary file of a killed writer in directory (a cache's)."""
    return _sweep(directory, lambda name: name.startswith(".") and ".tmp-" in name)


def _unheld(path: str) -> bool:
    """Nobody holds the lock on this file (its writer is gone), and it is old enough that a
    writer had time to take it."""
    try:
        if time.time() - os.lstat(path).st_mtime < SWEEP_MIN_AGE:
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False  # a writer is at work on it
    finally:
        os.close(fd)


def _names(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


def _sweep(directory: Path, match: Callable[[str], bool]) -> list[str]:
    gone: list[str] = []
    for name in _names(directory):
        full = os.path.join(directory, name)
        if match(name) and _unheld(full):
            try:
                os.unlink(full)
                gone.append(name)
            except OSError:
                pass
    return gone


def read_local_file(path: Path, what: str) -> tuple[bytes, int]:
    """Content and permission bits of a local file going into an image; a missing or
    unreadable one is a user error naming `what`."""
    from rdforge.errors import RdforgeError

    try:
        return path.read_bytes(), path.stat().st_mode & 0o777
    except OSError as e:
        raise RdforgeError(f"{what} {path}: {e.strerror}") from None


def hold_lock(directory: Path) -> int:
    """Lock a work directory for as long as the returned descriptor stays open: a directory
    whose lock nobody holds was left by a killed process (sweep_work_dirs)."""
    fd = os.open(directory / ".in-use", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def sweep_work_dirs(parent: Path, prefix: str) -> list[str]:
    """Remove work directories under parent named prefix* that no live process holds (a
    directory without its lock file yet counts by its own age)."""
    import shutil

    gone: list[str] = []
    for name in _names(parent):
        d = parent / name
        if not name.startswith(prefix) or d.is_symlink() or not d.is_dir():
            continue
        lock = d / ".in-use"
        try:
            dead = _unheld(str(lock)) if lock.exists() else (
                time.time() - d.stat().st_mtime >= SWEEP_MIN_AGE)
        except OSError:
            continue
        if dead:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(name)
    return gone
