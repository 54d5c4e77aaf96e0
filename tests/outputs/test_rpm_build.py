"""`rdforge build --distribution fedora`: the initrd from an rpm-md repository (the test
distribution of tests/rpmdist.py), its lock, an offline rebuild from the lock, and what a
foreign key or a damaged package does to it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import rpm_config

from rdforge.config import load
from rdforge.errors import ConfigError, SignatureError
from rdforge.outputs.initrd import build
from rdforge.sources import lock

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("rpmbuild"),
                                 reason="rpm and createrepo-c: setup.sh installs them")]


def test_built_from_rpms_with_a_lock_of_evrs(rpm_build: Path) -> None:
    m = json.loads(rpm_build.with_name("initrd.img.manifest.json").read_text())
    names = {p["name"]: p["version"] for p in m["packages"]}
    assert {"glibc", "systemd", "systemd-udev", "util-linux-core", "lvm2", "mdadm"} <= set(names)
    assert "libc6" not in names and "udev" not in names
    assert m["kernel_package"]["name"] == "kernel-core"
    # The TPM's device driver, which no rpm dependency names, came in for the tpm feature.
    assert "libtss2-tcti-device0t64" in names
    lk = lock.read(rpm_build.with_name("rdforge.lock"))
    assert lk.backend == "rpm-md" and lk.release == "fedora" and lk.arch == "x86_64"
    assert all(p.format == "rpm" and p.filename.startswith("Packages/") for p in lk.packages)
    audit = next(p for p in lk.packages if p.name == "audit-libs")
    assert audit.version.startswith("1:4.0.2-")  # the EVR, epoch included


def test_locked_offline_rebuild_gives_the_same_bytes(rpm_build: Path, tmp_path: Path) -> None:
    shutil.copy(rpm_build.with_name("rdforge.lock"), tmp_path / "rdforge.lock")
    cfg = rpm_config(tmp_path, locked=True, offline=True, mirror="file:///nonexistent/")
    res = build(cfg)
    assert res.output.read_bytes() == rpm_build.read_bytes()


def test_locked_build_refuses_packages_not_signed_by_the_key(rpm_build: Path, tmp_path: Path) -> None:
    """--locked reads no repository metadata: each package's header signature is what
    ties it to the key."""
    from rpmtools import make_key

    other = make_key(tmp_path / "gnupg", "someone else")
    shutil.copy(rpm_build.with_name("rdforge.lock"), tmp_path / "rdforge.lock")
    cfg = rpm_config(tmp_path, locked=True, offline=True, keyring=str(other.keyring))
    with pytest.raises(SignatureError, match="bad or missing signature"):
        build(cfg)
    assert not (tmp_path / "initrd.img").exists()


def test_the_profile_sets_defaults_that_the_configuration_overrides(tmp_path: Path) -> None:
    cfg = rpm_config(tmp_path)
    assert "systemd-udev" in cfg.packages and cfg.release == "fedora" and cfg.prefer == []
    cfg = rpm_config(tmp_path, packages=["bash"], release="f42")
    assert cfg.packages == ["bash"] and cfg.release == "f42"
    with pytest.raises(ConfigError, match="give the rpm-md repository"):
        load(None, {"distribution": "fedora"}, layered=False)
    with pytest.raises(ConfigError, match="no such profile"):
        load(None, {"distribution": "gentoo"}, layered=False)
    with pytest.raises(ConfigError, match="serve apt sources only"):
        rpm_config(tmp_path, microcode="all")
    with pytest.raises(ConfigError, match="weak_dependencies: for rpm-md distributions only"):
        load(None, {"weak_dependencies": True}, layered=False)


def test_weak_dependencies_are_followed_only_when_asked(tmp_path: Path) -> None:
    """systemd-cryptsetup in the test distribution recommends nothing, so a package is given
    a recommendation here: the rpm backend follows it with weak_dependencies only."""
    from rdforge.formats.rpmmd import Dep
    from rdforge.sources.rpmplan import RpmSource

    src = RpmSource(rpm_config(tmp_path))
    bash = src.universe.candidates["bash"]
    bash.deps["recommends"] = (Dep("kbd-misc"),)
    assert "kbd-misc" not in {p.name for p in src.resolve(["bash"]).packages}
    src.cfg.weak_dependencies = True
    assert "kbd-misc" in {p.name for p in src.resolve(["bash"]).packages}
