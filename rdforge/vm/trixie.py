"""A trixie system tree made with mmdebstrap from the host's archive (the mirrors of its apt
sources, mapped onto trixie), for tests that need the target's own tools and packaging
machinery: dpkg running a kernel package's hooks, kernel-install and its plugins. The tree is
kept as a tarball in the cache, keyed by what it holds."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

from rdforge.config import Config
from rdforge.errors import BootError
from rdforge.sources.cache import cache_root


def mirror_lines(release: str = "trixie") -> list[str]:
    from rdforge.sources.plan import archive_sources

    out = []
    for src in archive_sources(Config(release=release)):
        for suite in src.suites:
            out.append(f"deb {src.uri} {suite} {' '.join(src.components)}")
    return out


def system_tarball(packages: list[str], release: str = "trixie") -> Path:
    """mmdebstrap --variant=apt of release with packages, made once and cached."""
    exe = shutil.which("mmdebstrap")
    if exe is None:
        raise BootError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    lines = mirror_lines(release)
    key = hashlib.sha256("\n".join([release, *sorted(packages), *lines]).encode()).hexdigest()
    d = cache_root() / "systems"
    d.mkdir(parents=True, exist_ok=True)
    out = d / f"{release}-{key[:16]}.tar"
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.exists():
            return out
        tmp = out.with_suffix(".tmp.tar")
        r = subprocess.run([exe, "--variant=apt", "--format=tar", "--include=" + ",".join(packages),
                            release, str(tmp), *lines], capture_output=True, text=True)
        if r.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BootError(f"mmdebstrap failed: {r.stderr.strip().splitlines()[-1:]}")
        tmp.rename(out)
    return out


def unpack_system(tarball: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-C", str(dest), "-xf", str(tarball)], check=True)
    return dest


def run_in(root: Path, script: str, binds: dict[str, Path] | None = None,
           timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a shell script chrooted into root, in a private mount namespace with /proc, /dev,
    binds (path in root -> host directory) and an empty tmpfs at /efi (an ESP)."""
    mounts = [f"mount -t proc proc {root}/proc", f"mount --bind /dev {root}/dev",
              f"mkdir -p {root}/efi", f"mount -t tmpfs tmpfs {root}/efi"]
    for inside, host in (binds or {}).items():
        mounts += [f"mkdir -p {root}/{inside.lstrip('/')}",
                   f"mount --bind {host} {root}/{inside.lstrip('/')}"]
    (root / "tmp/rdforge-script").write_text(script)
    wrapper = "set -e\n" + "\n".join(mounts) + f"\nexec chroot {root} sh -e /tmp/rdforge-script\n"
    return subprocess.run(["unshare", "-m", "sh", "-c", wrapper], capture_output=True, text=True,
                          timeout=timeout)
