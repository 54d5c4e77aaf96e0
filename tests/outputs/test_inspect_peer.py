"""`rdforge inspect` and `diff` on a peer's image: the initrd initramfs-tools makes when
dpkg installs the kernel package in a trixie root (mkinitramfs through the kernel's postinst
hook), read back against initramfs-tools' own lsinitramfs and unmkinitramfs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.sources.cache import BlobCache
from rdforge.vm.trixie import run_in, system_tarball, unpack_system

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("inspect-peer")]
PACKAGES = ["initramfs-tools", "kmod", "linux-base", "zstd", "cpio"]


def _rdforge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", *args], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def peer(default_build: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trixie root with initramfs-tools, the default build's kernel package installed by
    dpkg (its postinst hook runs mkinitramfs), and that hook's /boot/initrd.img-KVER."""
    if shutil.which("mmdebstrap") is None or subprocess.run(["unshare", "-m", "true"]).returncode:
        pytest.skip("needs mmdebstrap and mount namespaces")
    root = unpack_system(system_tarball(PACKAGES), tmp_path_factory.mktemp("peer") / "root")
    m = json.loads(Path(f"{default_build}.manifest.json").read_text())
    kernel = m["kernel_package"]
    hit = BlobCache().lookup(kernel["sha256"], None, verify=False)
    assert hit is not None
    shutil.copyfile(hit, root / "tmp/linux-image.deb")
    r = run_in(root, "dpkg -i /tmp/linux-image.deb\nrm /tmp/linux-image.deb\n")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    img = root / f"boot/initrd.img-{m['kernel_version']}"
    assert img.is_file(), r.stdout[-3000:]
    return root, img


def test_list_names_the_paths_lsinitramfs_lists(peer: tuple[Path, Path]) -> None:
    root, img = peer
    r = run_in(root, f"lsinitramfs /boot/{img.name}\n")
    assert r.returncode == 0, r.stderr
    theirs = {p for p in r.stdout.splitlines() if p and p != "."}
    ours = _rdforge("inspect", "--list", "--json", str(img))
    assert ours.returncode == 0, ours.stderr
    rows = json.loads(ours.stdout)
    assert {row["path"].lstrip("/") for row in rows} == theirs
    assert any(row["path"] == "/init" for row in rows)  # initramfs-tools' shell init
    summary = _rdforge("inspect", str(img))
    assert summary.returncode == 0, summary.stderr


def test_extract_gives_the_tree_unmkinitramfs_extracts(peer: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    from test_inspect import _walk

    root, img = peer
    r = run_in(root, f"unmkinitramfs /boot/{img.name} /tmp/theirs\n")
    assert r.returncode == 0, r.stderr
    theirs_dir = root / "tmp/theirs"
    # with an early (uncompressed) segment unmkinitramfs writes early/ and main/
    if (theirs_dir / "main").is_dir():
        theirs_dir = theirs_dir / "main"
    ours = _rdforge("inspect", "--extract", str(tmp_path / "ours"), "--json", str(img))
    assert ours.returncode == 0, ours.stderr
    a, b = _walk(tmp_path / "ours"), _walk(theirs_dir)
    devices = {p for p, (kind, _m, _d) in b.items() if kind == "c"}
    assert {p: v for p, v in b.items() if p not in devices} == a
    ident = _rdforge("diff", str(img), str(img), "--json")
    assert ident.returncode == 0 and json.loads(ident.stdout)["identical"]
