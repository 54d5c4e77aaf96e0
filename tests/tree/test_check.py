"""The static check on a real image: a module whose dependency was left out is a problem even
where modules.dep, regenerated without it, lists no dependency (as `--exclude-modules dm_mod`
made it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdforge.outputs.inspect import read_initrd
from rdforge.tree.check import check_modules, check_tree

pytestmark = pytest.mark.integration


def test_a_module_whose_dependency_is_left_out_is_a_problem(default_build: Path) -> None:
    tree, _ = read_initrd(default_build)
    assert check_tree(tree).problems == []
    (kver,) = tree.listdir("usr/lib/modules")
    base = f"usr/lib/modules/{kver}"
    dep = tree.get(f"{base}/modules.dep")
    assert dep is not None
    lines = dep.data.decode().splitlines()
    dm = next(line.split(":")[0] for line in lines if line.split(":")[0].endswith("/dm-mod.ko"))
    crypt = next(line.split(":")[0] for line in lines if line.startswith(f"{dm.rsplit('/', 1)[0]}/dm-crypt.ko:"))
    # What depmod writes without dm_mod: dm-crypt and the other dm targets stay, dm-mod
    # gone from their dependency lines (dm-crypt's is then empty).
    dep.data = "".join(line.replace(f" {dm}", "") + "\n"
                       for line in lines if not line.startswith(f"{dm}:")).encode()
    assert f"{crypt}:\n" in dep.data.decode()
    tree.remove(f"{base}/{dm}")
    _count, problems = check_modules(tree)
    assert "module dm_crypt needs dm_mod (its .modinfo depends on it), which is not in the " \
           "image" in problems
    assert all("needs dm_mod" in p for p in problems), problems
