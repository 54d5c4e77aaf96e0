"""The same files from an .rpm as from the .deb they were repackaged from: trixie's packages
and their rpms in the test distribution (tests/rpmdist.py) unpack into the same trees."""

from __future__ import annotations

import shutil

import pytest
from rpmdist import FEDORA_NAMES, debian_set, make_distribution, rpm_name

from rdforge.formats.rpm import Rpm
from rdforge.tree.model import Tree
from rdforge.tree.prune import Pruner
from rdforge.tree.unpack import ContentPolicy, deb_members, new_tree, rpm_members, unpack_members

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("rpmbuild"),
                                 reason="rpm and createrepo-c: setup.sh installs them")]


def _tree(members: list, name: str) -> tuple[Tree, ContentPolicy]:  # type: ignore[type-arg]
    t, policy = new_tree(), ContentPolicy()
    unpack_members(t, members, name, name, Pruner(()), policy)
    return t, policy


def _entries(t: Tree) -> dict[str, tuple[str, int, bytes, str]]:
    return {p: (e.kind, e.mode, e.data, e.target) for p, e in t.entries.items()}


def test_every_package_unpacks_alike_from_deb_and_rpm() -> None:
    repo = make_distribution()
    pkgs, (kernel, kernel_deb) = debian_set()
    for p, deb in pkgs:
        n = rpm_name(p)
        rpm = repo / "Packages" / f"{n.name}-{n.version}-{n.release}.{n.arch}.rpm"
        from_rpm, rpm_policy = _tree(rpm_members(rpm, 1 << 30), p.name)
        from_deb, deb_policy = _tree(deb_members(deb, 1 << 30), p.name)
        assert _entries(from_rpm) == _entries(from_deb), p.name
        assert rpm_policy.setid_cleared == deb_policy.setid_cleared
        assert [o[1:] for o in rpm_policy.owners] == [o[1:] for o in deb_policy.owners], p.name
        assert Rpm.open(rpm).name == FEDORA_NAMES.get(p.name, p.name)
    # kernel-core: the same files, with the image where Fedora keeps it.
    n = rpm_name(kernel, kernel=True)
    rpm = repo / "Packages" / f"{n.name}-{n.version}-{n.release}.{n.arch}.rpm"
    deb_files = {ti.name.lstrip("./"): c for ti, c in deb_members(kernel_deb, 1 << 30) if c}
    rpm_files = {ti.name.lstrip("./"): c for ti, c in rpm_members(rpm, 1 << 30) if c}
    kver = kernel.name.removeprefix("linux-image-")
    assert rpm_files.pop(f"usr/lib/modules/{kver}/vmlinuz") == deb_files.pop(f"boot/vmlinuz-{kver}")
    assert rpm_files == {k: v for k, v in deb_files.items() if not k.startswith("boot/")}
