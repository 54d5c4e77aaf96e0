"""The console keymap: console-data's keymaps stored plain, the unit that loads one, and the
configured keymap checked against what the image has."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from rdforge.errors import RdforgeError
from rdforge.tree import keymap
from rdforge.tree.fixups import UNITDIR
from rdforge.tree.model import Tree


def _tree(loadkeys: bool = True) -> Tree:
    t = Tree()
    if loadkeys:
        t.add_file("usr/bin/loadkeys", b"\x7fELF", 0o755)
    for name in ("qwertz/de-latin1", "qwertz/de-latin1-nodeadkeys", "azerty/fr-latin9", "qwerty/us"):
        t.add_file(f"{keymap.KEYMAPS}/i386/{name}.kmap.gz", gzip.compress(f"# {name}\n".encode()),
                   package="console-data")
    t.add_file(f"{keymap.KEYMAPS}/i386/include/qwertz-layout.inc.gz", gzip.compress(b"keycode 21 = z\n"))
    return t


def test_keymaps_are_stored_plain_and_the_configured_one_is_written() -> None:
    t = _tree()
    done = keymap.console_keymap(t, "de-latin1")
    e = t.get(f"{keymap.KEYMAPS}/i386/qwertz/de-latin1.kmap")
    assert e is not None and e.data == b"# qwertz/de-latin1\n" and e.package == "console-data"
    assert t.get(f"{keymap.KEYMAPS}/i386/qwertz/de-latin1.kmap.gz") is None
    inc = t.get(f"{keymap.KEYMAPS}/i386/include/qwertz-layout.inc")
    assert inc is not None and inc.data == b"keycode 21 = z\n"
    conf = t.get("etc/vconsole.conf")
    assert conf is not None and conf.data == b"KEYMAP=de-latin1\n"
    assert t.get(keymap.SCRIPT) is not None
    assert t.get(f"{UNITDIR}/sysinit.target.wants/rdforge-console-keymap.service") is not None
    unit = t.get(f"{UNITDIR}/rdforge-console-keymap.service")
    assert unit is not None and b"ImportCredential=vconsole.keymap" in unit.data
    assert b"Before=sysinit.target cryptsetup-pre.target systemd-ask-password-console" in unit.data
    assert keymap.available(t) == ["de-latin1", "de-latin1-nodeadkeys", "fr-latin9", "us"]
    assert "de-latin1" in done[0]


def test_no_keymap_configured_still_loads_one_chosen_at_boot() -> None:
    t = _tree()
    keymap.console_keymap(t, "")
    assert t.get("etc/vconsole.conf") is None and t.get(keymap.SCRIPT) is not None


def test_an_unknown_keymap_is_refused_naming_similar_ones() -> None:
    with pytest.raises(RdforgeError, match=r"keymap de-latin2: console-data has no such keymap "
                                           r"\(similar: de-latin1, de-latin1-nodeadkeys\)"):
        keymap.console_keymap(_tree(), "de-latin2")


def test_without_loadkeys_nothing_is_added_and_a_configured_keymap_is_an_error() -> None:
    t = _tree(loadkeys=False)
    assert keymap.console_keymap(t, "") == []
    assert t.get(keymap.SCRIPT) is None
    with pytest.raises(RdforgeError, match="no loadkeys"):
        keymap.console_keymap(_tree(loadkeys=False), "us")


def test_a_damaged_keymap_is_one_line() -> None:
    t = _tree()
    t.add_file(f"{keymap.KEYMAPS}/i386/qwerty/uk.kmap.gz", b"\x1f\x8b\x08garbage", package="x")
    with pytest.raises(RdforgeError, match=r"uk.kmap.gz \(from x\): damaged gzip data"):
        keymap.console_keymap(t, "")


def test_the_loader_script_is_bash(tmp_path: Path) -> None:
    import subprocess

    f = tmp_path / "s"
    f.write_text(keymap.SCRIPT_TEXT)
    assert subprocess.run(["bash", "-n", str(f)]).returncode == 0


def test_the_unit_starts_nothing_when_no_keymap_is_named() -> None:
    t = _tree()
    keymap.console_keymap(t, "")
    unit = t.get("usr/lib/systemd/system/rdforge-console-keymap.service")
    assert unit is not None
    for cond in (b"ConditionCredential=|vconsole.keymap", b"ConditionKernelCommandLine=|vconsole.keymap",
                 b"ConditionPathExists=|/etc/vconsole.conf"):
        assert cond in unit.data


DEBIAN_CONF = b"""# Type Path    Mode UID  GID  Age Argument
L /run/shm     -    -    -    -   /dev/shm
L+ /etc/mtab   -    -    -    -  ../proc/self/mounts
L+ /etc/vconsole.conf  - - -  -  default/keyboard
"""


def test_debians_tmpfiles_line_cannot_replace_the_images_vconsole_conf() -> None:
    t = _tree()
    t.add_file(keymap.DEBIAN_TMPFILES, DEBIAN_CONF, package="systemd")
    keymap.console_keymap(t, "de-latin1")
    e = t.get(keymap.DEBIAN_TMPFILES)
    assert e is not None and e.data is not None and e.package == "systemd"
    live = [ln.split()[1] for ln in e.data.decode().splitlines() if ln and not ln.startswith("#")]
    assert live == ["/run/shm", "/etc/mtab"]
    # Without a keymap setting there is no vconsole.conf of the image's own to keep.
    t = _tree()
    t.add_file(keymap.DEBIAN_TMPFILES, DEBIAN_CONF, package="systemd")
    keymap.console_keymap(t, "")
    assert t.get(keymap.DEBIAN_TMPFILES).data == DEBIAN_CONF  # type: ignore[union-attr]
