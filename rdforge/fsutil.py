"""Writing files so that a reader sees the old content or the new one, never a part."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write under a unique temporary name beside path, then rename into place: a failure
    leaves the old file intact, and concurrent writers never collide on a temporary name."""
    write_atomic_with(path, lambda f: f.write(data), mode)


def write_atomic_with(path: Path, write: Callable[[BinaryIO], object], mode: int = 0o644) -> None:
    """write_atomic for content that write(file) produces piece by piece."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_local_file(path: Path, what: str) -> tuple[bytes, int]:
    """Content and permission bits of a local file going into an image; a missing or
    unreadable one is a user error naming `what`."""
    from rdforge.errors import RdforgeError

    try:
        return path.read_bytes(), path.stat().st_mode & 0o777
    except OSError as e:
        raise RdforgeError(f"{what} {path}: {e.strerror}") from None
