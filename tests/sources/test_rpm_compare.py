"""The rpm resolver against dnf on the test rpm distribution (tests/rpmdist.py): for the
default image's package set in Fedora's names, rdforge picks the packages and versions dnf
would install into an empty root with weak dependencies off."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rpmdist import make_distribution

from rdforge.sources.cache import BlobCache
from rdforge.sources.rpmmd import RpmMdRepo
from rdforge.sources.rpmresolve import RpmUniverse, resolve

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (shutil.which("rpmbuild") and shutil.which("dnf")),
                                 reason="rpm, createrepo-c and dnf: setup.sh installs them")]

FEDORA_SET = ["fedora-release-common", "systemd", "systemd-udev", "kmod", "bash",
              "util-linux-core", "util-linux-mount", "e2fsprogs", "device-mapper",
              "systemd-cryptsetup", "cryptsetup-libs", "lvm2", "mdadm", "kbd", "kbd-misc",
              "kernel-core"]


def _dnf_install(repo: Path, root: Path, names: list[str]) -> dict[str, str]:
    out = subprocess.run(["dnf", f"--installroot={root}", "--releasever=test",
                          "--setopt=reposdir=/dev/null", f"--repofrompath=t,file://{repo}",
                          "--repo=t", "--setopt=t.gpgcheck=0", "--setopt=install_weak_deps=False",
                          "--assumeno", "install", *names], capture_output=True, text=True).stdout
    rows = re.findall(r"^ (\S+)\s+(?:x86_64|noarch)\s+(\S+)\s+t\s", out, re.M)
    assert rows, out
    return dict(rows)


def test_default_set_resolves_as_dnf_does(tmp_path: Path) -> None:
    repo = make_distribution()
    src = RpmMdRepo(f"file://{repo}", repo / "key.gpg", blobs=BlobCache(tmp_path / "cache"))
    u = RpmUniverse(src.packages(), filelists=src.filelists)
    ours = {p.name: p.evr.removeprefix("0:") for p in resolve(u, FEDORA_SET).packages}
    theirs = _dnf_install(repo, tmp_path / "root", FEDORA_SET)
    assert sorted(set(ours) ^ set(theirs)) == []
    assert {n: (v, theirs[n]) for n, v in ours.items() if theirs[n] != v} == {}
