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


MODEL_MAP = b"""# Generated
de-latin1\t\tde\tpc105\t\t-\t\tterminate:ctrl_alt_bksp
de-latin1-nodeadkeys\tde\tpc105\t\tnodeadkeys\tterminate:ctrl_alt_bksp
fr-latin9\t\tfr\tpc105\t\tlatin9\t\tterminate:ctrl_alt_bksp
"""


def _host(tmp: Path, keyboard: str = "", vconsole: str = "") -> Path:
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
    t = _tree()
    t.add_file(keymap.MODEL_MAP, MODEL_MAP)
    host = _host(tmp_path, keyboard, vconsole)
    assert keymap.host_keymap(t, host)[0] == want
    done = keymap.console_keymap(t, "", host_only=True, host_root=host)
    conf = t.get("etc/vconsole.conf")
    if want:
        assert conf is not None and conf.data == f"KEYMAP={want}\n".encode()
        assert any(f"host-only: keymap {want} from" in d for d in done)
    else:
        assert conf is None


def test_a_host_keymap_console_data_lacks_is_only_noted(tmp_path: Path) -> None:
    t = _tree()
    done = keymap.console_keymap(t, "", host_only=True,
                                 host_root=_host(tmp_path, vconsole="KEYMAP=dvorak-xx\n"))
    assert t.get("etc/vconsole.conf") is None and any("not one of console-data's" in d for d in done)
    # Without loadkeys a host's keymap is no error either (a configured one is).
    assert keymap.console_keymap(_tree(loadkeys=False), "", host_only=True,
                                 host_root=tmp_path) == []


def test_the_unit_starts_nothing_when_no_keymap_is_named() -> None:
    t = _tree()
    keymap.console_keymap(t, "")
    unit = t.get("usr/lib/systemd/system/rdforge-console-keymap.service")
    assert unit is not None
    for cond in (b"ConditionCredential=|vconsole.keymap", b"ConditionKernelCommandLine=|vconsole.keymap",
                 b"ConditionPathExists=|/etc/vconsole.conf"):
        assert cond in unit.data
