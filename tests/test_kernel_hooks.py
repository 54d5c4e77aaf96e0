"""The kernel's postinst and postrm hooks (rdforge-initramfs) and `rdforge update`, run as
Debian's kernel packages run them, on a root with an installed kernel ($RDFORGE_ROOT)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_kernel

from rdforge.outputs import microcode
from rdforge.sources import lock as lockfile
from rdforge.sources.cache import BlobCache

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "dist/kernel"


@pytest.fixture(scope="module")
def system(default_build: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str]]:
    """A root with the default build's kernel installed, and an environment whose PATH has
    this checkout's rdforge."""
    root = tmp_path_factory.mktemp("system")
    _moddir, kver = install_kernel(default_build, root)
    bindir = root.parent / (root.name + "-bin")
    bindir.mkdir()
    (bindir / "rdforge").write_text(f"#!/bin/sh\nexec {sys.executable} -m rdforge.cli \"$@\"\n")
    (bindir / "rdforge").chmod(0o755)
    env = {**os.environ, "RDFORGE_ROOT": str(root), "PATH": f"{bindir}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    return root, kver, env


def _hook(kind: str, kver: str, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HOOKS / f"{kind}.d/rdforge"), kver, f"/boot/vmlinuz-{kver}"],
                          capture_output=True, text=True, env={**env, **extra}, timeout=900)


def test_postinst_makes_the_initrd_postrm_removes_it(system: tuple[Path, str, dict[str, str]],
                                                     default_build: Path) -> None:
    root, kver, env = system
    img = root / f"boot/initrd.img-{kver}"
    # dpkg runs the hooks at every maintainer script stage: only configure builds
    r = _hook("postinst", kver, env, DEB_MAINT_PARAMS="'upgrade' '1'")
    assert r.returncode == 0 and not img.exists()
    r = _hook("postinst", kver, env, INITRD="No", DEB_MAINT_PARAMS="'configure' ''")
    assert r.returncode == 0 and not img.exists()
    r = _hook("postinst", kver, env, DEB_MAINT_PARAMS="'configure' ''")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # a kernel hook writes nothing to stdout
    assert f"rdforge: {kver}: built {img}" in r.stderr
    # the installed kernel's modules and the archive's packages: the package build's image
    assert img.read_bytes() == default_build.read_bytes()
    state = root / "var/lib/rdforge"
    assert (state / f"{img.name}.lock").is_file() and (state / f"{img.name}.manifest.json").is_file()
    assert not list((root / "boot").glob("*.lock")) and not list((root / "boot").glob("*.json"))
    r = _hook("postrm", kver, env, DEB_MAINT_PARAMS="'purge'")
    assert r.returncode == 0 and img.exists()  # only at remove
    r = _hook("postrm", kver, env, DEB_MAINT_PARAMS="'remove'")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert not img.exists() and not (state / f"{img.name}.lock").exists()


def test_hook_without_a_version_is_refused(system: tuple[Path, str, dict[str, str]]) -> None:
    _root, _kver, env = system
    r = subprocess.run([str(HOOKS / "postinst.d/rdforge")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "did not pass a version number" in r.stderr


def test_a_vendor_initrd_is_used_with_this_machines_microcode(
        system: tuple[Path, str, dict[str, str]], microcode_build: Path) -> None:
    root, kver, env = system
    vendor = root / f"usr/lib/modules/{kver}/initrd"
    vendor.write_bytes(b"vendor initrd bytes")
    lk = lockfile.read(microcode_build.with_name("rdforge.lock"))
    for p in lk.microcode:  # the machine's microcode packages, as dpkg unpacks them
        hit = BlobCache().lookup(p.sha256, p.size, verify=False)
        assert hit is not None
        subprocess.run(["dpkg-deb", "-x", str(hit), str(root)], check=True)
    try:
        r = subprocess.run([sys.executable, "-m", "rdforge.cli", "update", "-c", "-k", kver],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0 and r.stdout == "", r.stderr
        assert "vendor" in r.stderr
        data = (root / f"boot/initrd.img-{kver}").read_bytes()
        early, rest = microcode.split_early(data)
        assert rest == b"vendor initrd bytes"
        cpu = microcode.host_cpu()
        want = microcode.blobs(microcode.installed_files(root), cpu)
        assert bool(early) == bool(want)  # this CPU's file, if its vendor's package has one
        if early:
            assert want == {cpu.vendor: want[cpu.vendor]}
    finally:
        vendor.unlink()
        shutil.rmtree(root / "usr/lib/firmware", ignore_errors=True)


def test_update_all_refreshes_only_existing_initrds(system: tuple[Path, str, dict[str, str]]) -> None:
    root, kver, env = system
    (root / f"boot/initrd.img-{kver}").unlink(missing_ok=True)
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "update", "-k", "all", "--json"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []  # nothing to update: no initrd exists
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "update", "-k", "9.9.9-none"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "skipped" in r.stderr
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "update", "-c", "-k", "9.9.9-none"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "is not installed" in r.stderr and r.stderr.count("\n") == 1
