"""Storage stacks in the initrd: configured where lvm2 and mdadm are in the tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rdforge.tree import storage
from rdforge.tree.fixups import UNITDIR
from rdforge.tree.model import SYMLINK, Tree


def tree_with(*paths: str) -> Tree:
    t = Tree()
    for p in paths:
        t.add_file(p, b"x")
    return t


def test_lvm_and_mdadm_configured_only_where_present() -> None:
    t = tree_with("usr/sbin/lvm", "etc/lvm/lvm.conf", "usr/bin/systemd-run",
                  f"{UNITDIR}/lvm2-monitor.service")
    done = storage.storage_stacks(t)
    conf = t.get("etc/lvm/lvm.conf")
    assert conf is not None and b"monitoring = 0" in conf.data
    assert t.get("etc/mdadm/mdadm.conf") is None and t.get(storage.MD_REPORT) is None
    masked = t.get("etc/systemd/system/lvm2-monitor.service", follow=False)
    assert masked is not None and masked.kind == SYMLINK and masked.target == "/dev/null"
    assert not any("missing" in d for d in done)


def test_lvm_without_systemd_run_is_reported() -> None:
    done = storage.storage_stacks(tree_with("usr/sbin/lvm"))
    assert any("systemd-run is missing" in d for d in done)


def test_unchecked_thin_pools_are_noted_only_without_thin_check() -> None:
    lacking = storage.storage_stacks(tree_with("usr/sbin/lvm", "usr/bin/systemd-run"))
    assert any("thin and cache pools are activated unchecked" in d for d in lacking)
    having = storage.storage_stacks(tree_with("usr/sbin/lvm", "usr/bin/systemd-run",
                                              "usr/sbin/thin_check"))
    assert not any("thin" in d for d in having)


def test_mdadm_assembles_every_array_as_local_and_reports_degraded_starts() -> None:
    t = tree_with("usr/sbin/mdadm")
    storage.storage_stacks(t)
    conf = t.get("etc/mdadm/mdadm.conf")
    assert conf is not None and b"HOMEHOST <ignore>" in conf.data
    dropin = t.get(f"{UNITDIR}/mdadm-last-resort@.service.d/10-rdforge.conf")
    assert dropin is not None and f"/{storage.MD_REPORT} %i".encode() in dropin.data
    script = t.get(storage.MD_REPORT)
    assert script is not None and script.mode == 0o755
    assert subprocess.run(["bash", "-n"], input=script.data).returncode == 0


def test_an_mdadm_conf_of_the_tree_is_kept() -> None:
    t = tree_with("usr/sbin/mdadm")
    t.add_file("etc/mdadm/mdadm.conf", b"ARRAY /dev/md0 UUID=1:2:3:4\n")
    storage.storage_stacks(t)
    conf = t.get("etc/mdadm/mdadm.conf")
    assert conf is not None and conf.data == b"ARRAY /dev/md0 UUID=1:2:3:4\n"


@pytest.mark.integration
def test_default_image_carries_lvm2_and_mdadm_with_their_udev_rules(default_build: Path) -> None:
    import json

    from rdforge.formats import compress, cpio

    entries, _ = cpio.read(compress.decompress(default_build.read_bytes()))
    paths = {e.name for e in entries}
    for p in ("usr/sbin/lvm", "usr/sbin/mdadm", "usr/sbin/dmsetup", "usr/bin/systemd-run",
              "usr/lib/udev/rules.d/69-lvm.rules", "usr/lib/udev/rules.d/64-md-raid-assembly.rules",
              "usr/lib/udev/rules.d/63-md-raid-arrays.rules", "usr/lib/udev/rules.d/56-lvm.rules",
              "usr/lib/systemd/system/mdadm-last-resort@.timer", "etc/lvm/lvm.conf",
              "etc/mdadm/mdadm.conf", storage.MD_REPORT, storage.EXPLAIN,
              storage.CREDS_SCREEN,
              "usr/lib/systemd/system/emergency.target.wants/rdforge-explain-missing.service"):
        assert p in paths, p
    # What serves only the running system stayed out (dmeventd pulls in a 3 MB library).
    for p in ("usr/sbin/dmeventd", "usr/sbin/lvmpolld", "usr/sbin/mdmon"):
        assert p not in paths, p
    assert not any("liblvm2cmd" in p for p in paths)
    manifest = json.loads(default_build.with_name(default_build.name + ".manifest.json").read_text())
    assert any(s.startswith("lvm2:") for s in manifest["storage"])


@pytest.mark.integration
def test_fido2_and_pkcs11_unlocking_libraries_come_when_asked_for(default_build: Path,
                                                                  tmp_path: Path) -> None:
    """systemd-cryptsetup's FIDO2 and PKCS#11 token plugins dlopen() libfido2 and p11-kit;
    the default image leaves those out, `--dlopen-features ... fido2 p11-kit` brings them."""
    from rdforge.config import Config
    from rdforge.formats import compress, cpio
    from rdforge.outputs.initrd import build

    def names(img: Path) -> set[str]:
        entries, _ = cpio.read(compress.decompress(img.read_bytes()))
        return {e.name.rsplit("/", 1)[-1] for e in entries}

    plugins = {"libcryptsetup-token-systemd-fido2.so", "libcryptsetup-token-systemd-pkcs11.so"}
    libs = {"libfido2.so.1", "libp11-kit.so.0"}
    default = names(default_build)
    assert plugins <= default and not libs & default
    img = tmp_path / "tokens.img"
    build(Config(output=str(img), lock=str(tmp_path / "tokens.lock"),
                 dlopen_features=["cryptsetup", "tpm", "fido2", "p11-kit"]))
    assert plugins | libs <= names(img)


def test_the_missing_device_explainer_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n"], input=storage.EXPLAIN_SCRIPT.encode()).returncode == 0
