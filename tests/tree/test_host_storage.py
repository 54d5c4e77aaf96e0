"""Host-only images carry the crypttab lines and md arrays under this machine's root and
resume devices, found through sysfs the way the kernel stacks them (a fake /sys and /proc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdforge.tree import storage
from rdforge.tree.host_storage import MODEL_MAP as MODEL_MAP_PATH
from rdforge.tree.host_storage import (
    array_lines,
    crypttab_lines,
    host_keymap,
    host_only,
    host_storage,
)
from rdforge.tree.keymap import KEYMAPS
from rdforge.tree.model import Tree

CRYPTTAB = """\
# <target name> <source device> <key file> <options>
sda3_crypt UUID=1111-aaaa none luks,discard
cryptswap  /dev/sda4 /dev/urandom swap,cipher=aes-xts-plain64
data_crypt UUID=2222-bbbb /etc/keys/data.key luks
md_crypt   UUID=3333-cccc none luks
"""
MDADM = """\
HOMEHOST <system>
MAILADDR root
ARRAY /dev/md/0  metadata=1.2 UUID=a1b2c3d4:e5f60718:293a4b5c:6d7e8f90
   name=host:0
# an old one
ARRAY /dev/md1 UUID=01234567:89abcdef:01234567:89abcdef
"""


def _dev(sys_root: Path, name: str, majmin: str, slaves: tuple[str, ...] = (),
         dm: tuple[str, str] | None = None, md: bool = False) -> None:
    d = sys_root / "class/block" / name
    (d / "slaves").mkdir(parents=True)
    (d / "dev").write_text(majmin + "\n")
    for s in slaves:
        (d / "slaves" / s).touch()
    if dm:
        (d / "dm").mkdir()
        (d / "dm/name").write_text(dm[0] + "\n")
        (d / "dm/uuid").write_text(dm[1] + "\n")
    if md:
        (d / "md").mkdir()
    (sys_root / "dev/block").mkdir(parents=True, exist_ok=True)
    (sys_root / "dev/block" / majmin).symlink_to(d)


def _host(tmp: Path, resume: str = "0:0", swaps: str = "") -> tuple[Path, Path, Path]:
    """Root on LVM on LUKS on an md RAID1 (md_crypt); swap on the LV; sda3_crypt unused."""
    host, sys_root, proc = tmp / "host", tmp / "sys", tmp / "proc"
    (host / "etc/mdadm").mkdir(parents=True)
    (host / "etc/crypttab").write_text(CRYPTTAB)
    (host / "etc/mdadm/mdadm.conf").write_text(MDADM)
    for n in ("sda1", "sdb1"):
        _dev(sys_root, n, f"8:{1 if n == 'sda1' else 17}")
    _dev(sys_root, "md0", "9:0", ("sda1", "sdb1"), md=True)
    _dev(sys_root, "dm-0", "254:0", ("md0",), dm=("md_crypt", "CRYPT-LUKS2-3333cccc-md_crypt"))
    _dev(sys_root, "dm-1", "254:1", ("dm-0",), dm=("vg-root", "LVM-abc"))
    _dev(sys_root, "dm-2", "254:2", ("dm-0",), dm=("vg-swap", "LVM-def"))
    _dev(sys_root, "sda4", "8:4")
    _dev(sys_root, "dm-3", "254:3", ("sda4",), dm=("cryptswap", "CRYPT-PLAIN-cryptswap"))
    (sys_root / "power").mkdir()
    (sys_root / "power/resume").write_text(resume + "\n")
    (proc / "self").mkdir(parents=True)
    (proc / "self/mountinfo").write_text(
        "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n"
        "23 22 0:21 / /proc rw shared:12 - proc proc rw\n")
    (proc / "swaps").write_text("Filename Type Size Used Priority\n" + swaps)
    return host, sys_root, proc


def test_the_crypttab_line_and_arrays_under_the_root_come_along(tmp_path: Path) -> None:
    host, sys_root, proc = _host(tmp_path)
    tree = Tree()
    done = host_storage(tree, host, sys_root, proc)
    crypttab = tree.get("etc/crypttab")
    assert crypttab is not None
    lines = [x for x in crypttab.data.decode().splitlines() if not x.startswith("#")]
    assert lines == ["md_crypt   UUID=3333-cccc none luks"]  # not the unused or data ones
    conf = tree.get("etc/mdadm/mdadm.conf")
    assert conf is not None
    text = conf.data.decode()
    assert "HOMEHOST <ignore>" in text and "HOMEHOST <system>" not in text
    assert "ARRAY /dev/md/0  metadata=1.2 UUID=a1b2c3d4:e5f60718:293a4b5c:6d7e8f90 name=host:0" in text
    assert "MAILADDR" not in text
    assert any("md_crypt" in d for d in done) and any("2 ARRAY lines" in d for d in done)
    # storage_stacks keeps the host's mdadm.conf rather than writing its generic one.
    storage.storage_stacks(tree)
    conf = tree.get("etc/mdadm/mdadm.conf")
    assert conf is not None and b"this host's arrays" in conf.data


def test_resume_device_stack_counts_but_random_key_swap_does_not(tmp_path: Path) -> None:
    # Resume from a swap on cryptswap (a random key each boot): never in the initrd's crypttab.
    host, sys_root, proc = _host(tmp_path, resume="254:3", swaps="/dev/dm-3 partition 1 0 -2\n")
    tree = Tree()
    host_storage(tree, host, sys_root, proc)
    crypttab = tree.get("etc/crypttab")
    assert crypttab is not None and b"cryptswap" not in crypttab.data
    assert crypttab_lines(CRYPTTAB, {"cryptswap", "data_crypt"}) == [
        "data_crypt UUID=2222-bbbb none luks"]  # the key file is not copied into the initrd


def test_a_plain_root_changes_nothing(tmp_path: Path) -> None:
    host, sys_root, proc = _host(tmp_path)
    (proc / "self/mountinfo").write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    tree = Tree()
    assert host_storage(tree, host, sys_root, proc) == []
    assert tree.get("etc/crypttab") is None and tree.get("etc/mdadm/mdadm.conf") is None


def test_array_lines_join_continuations_only() -> None:
    assert array_lines("ARRAY /dev/md0 UUID=x\n  name=a:0\nMAILADDR root\n  stray\n") == [
        "ARRAY /dev/md0 UUID=x name=a:0"]


def test_a_configured_crypttab_wins(tmp_path: Path) -> None:
    host, sys_root, proc = _host(tmp_path)
    tree = Tree()
    tree.add_file("etc/crypttab", b"mine UUID=9 none luks\n")
    done = host_storage(tree, host, sys_root, proc)
    crypttab = tree.get("etc/crypttab")
    assert crypttab is not None and crypttab.data == b"mine UUID=9 none luks\n"
    assert any("as configured" in d for d in done)


def _keymap_tree() -> Tree:
    t = Tree()
    for name in ("qwertz/de-latin1", "qwertz/de-latin1-nodeadkeys", "azerty/fr-latin9"):
        t.add_file(f"{KEYMAPS}/i386/{name}.kmap.gz", b"", package="console-data")
    return t


MODEL_MAP = b"""# Generated
de-latin1\t\tde\tpc105\t\t-\t\tterminate:ctrl_alt_bksp
de-latin1-nodeadkeys\tde\tpc105\t\tnodeadkeys\tterminate:ctrl_alt_bksp
fr-latin9\t\tfr\tpc105\t\tlatin9\t\tterminate:ctrl_alt_bksp
"""


def _keyboard_host(tmp: Path, keyboard: str = "", vconsole: str = "") -> Path:
    (tmp / "etc/default").mkdir(parents=True)
    if keyboard:
        (tmp / "etc/default/keyboard").write_text(keyboard)
    if vconsole:
        (tmp / "etc/vconsole.conf").write_text(vconsole)
    return tmp


@pytest.mark.parametrize("keyboard,vconsole,want", [
    ('XKBMODEL="pc105"\nXKBLAYOUT="de"\nXKBVARIANT="nodeadkeys"\n', "", "de-latin1-nodeadkeys"),
    ('XKBLAYOUT="de"\nXKBVARIANT=""\n', "", "de-latin1"),
    ('XKBLAYOUT="fr,us"\nXKBVARIANT="latin9,"\n', "", "fr-latin9"),
    ('XKBLAYOUT="de"\n', "KEYMAP=fr-latin9\n", "fr-latin9"),  # vconsole.conf first
    ('XKBLAYOUT="us"\n', "", ""),  # the kernel's own map: nothing to load
])
def test_host_only_takes_this_machines_keymap(tmp_path: Path, keyboard: str, vconsole: str,
                                               want: str) -> None:
    t = _keymap_tree()
    t.add_file(MODEL_MAP_PATH, MODEL_MAP)
    host = _keyboard_host(tmp_path, keyboard, vconsole)
    assert host_keymap(t, host)[0] == want
    km, done = host_only(t, "", host, host / "sys", host / "proc")
    assert km == want
    if want:
        assert any(f"host-only: keymap {want} from" in d for d in done)
    # A configured keymap wins over the host's.
    assert host_only(t, "us", host, host / "sys", host / "proc")[0] == "us"


def test_a_host_keymap_console_data_lacks_is_only_noted(tmp_path: Path) -> None:
    host = _keyboard_host(tmp_path, vconsole="KEYMAP=dvorak-xx\n")
    km, done = host_only(_keymap_tree(), "", host, host / "sys", host / "proc")
    assert km == "" and any("not one of console-data's" in d for d in done)
