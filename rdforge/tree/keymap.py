"""The console keymap, loaded before any prompt: a German or French user must be able to type
the disk's passphrase on the VT. Debian's systemd is built without systemd-vconsole-setup,
so the image does it itself, with kbd's loadkeys and console-data's PC keymaps.

The map is the first of: a `vconsole.keymap` credential (handed over like any system
credential: no rebuild for a machine with another keyboard), `vconsole.keymap=` on the kernel
command line (systemd's own name for it), and `KEYMAP=` in /etc/vconsole.conf, which the
`keymap` setting writes. None of them: the kernel's built-in US map stays, and nothing runs.

The keymaps are stored uncompressed: console-data ships each one gzipped, but the image's
compression does far better over all of them together (they share most of their text)."""

from __future__ import annotations

import gzip
import zlib

from rdforge.errors import RdforgeError
from rdforge.tree.fixups import UNITDIR
from rdforge.tree.model import FILE, Tree

KEYMAPS = "usr/share/keymaps"
SCRIPT = "usr/lib/rdforge/console-keymap"
# bash builtins, loadkeys and the kernel log only.
SCRIPT_TEXT = """#!/bin/bash
# rdforge: load the console keymap before any prompt (see rdforge-console-keymap.service).
km= from=
if [[ -n ${CREDENTIALS_DIRECTORY:-} && -r $CREDENTIALS_DIRECTORY/vconsole.keymap ]]; then
    read -r km < "$CREDENTIALS_DIRECTORY/vconsole.keymap"  # (no newline at its end: status 1)
    from="the vconsole.keymap credential"
fi
if [[ -z $km ]]; then
    read -r -a words < /proc/cmdline
    for w in "${words[@]}"; do
        [[ $w == vconsole.keymap=* ]] && km=${w#*=} from="the kernel command line"
    done
fi
if [[ -z $km && -r /etc/vconsole.conf ]]; then
    while IFS='=' read -r k v; do
        [[ $k == KEYMAP ]] && km=${v//\\"/} from=/etc/vconsole.conf
    done < /etc/vconsole.conf
fi
[[ -n $km ]] || exit 0
[[ -e /dev/tty0 ]] || exit 0  # no virtual terminals (a serial-only machine)
if err=$(loadkeys -q -C /dev/tty0 "$km" 2>&1); then
    echo "<5>rdforge: console keymap $km loaded (from $from)" > /dev/kmsg
else
    echo "<3>rdforge: console keymap $km (from $from) could not be loaded: ${err##*: }" > /dev/kmsg
fi
"""
UNIT = f"""\
[Unit]
Description=Console keymap
DefaultDependencies=no
After=systemd-udevd.service
Before=sysinit.target cryptsetup-pre.target systemd-ask-password-console.service
Before=emergency.service rescue.service
# Only when a keymap is named somewhere: otherwise no program starts at all.
ConditionCredential=|vconsole.keymap
ConditionKernelCommandLine=|vconsole.keymap
ConditionPathExists=|/etc/vconsole.conf

[Service]
Type=oneshot
RemainAfterExit=yes
ImportCredential=vconsole.keymap
ExecStart=/{SCRIPT}
"""


def available(tree: Tree) -> list[str]:
    """The keymap names in the tree (console-data's PC keymaps)."""
    return sorted(p.rsplit("/", 1)[-1].removesuffix(".gz").removesuffix(".kmap")
                  for p, _e in tree.files()
                  if p.startswith(f"{KEYMAPS}/i386/") and p.endswith((".kmap", ".kmap.gz")))


def console_keymap(tree: Tree, keymap: str) -> list[str]:
    """Store the keymaps uncompressed and add the unit that loads one, writing keymap (if
    any) to /etc/vconsole.conf; returns what was done, for the manifest. Without loadkeys or
    keymaps in the tree nothing is added, and a keymap named is an error."""
    for path, e in list(tree.files()):
        if path.startswith(f"{KEYMAPS}/") and path.endswith(".gz") and e.kind == FILE:
            try:
                data = gzip.decompress(e.data)
            except (OSError, EOFError, zlib.error) as err:
                raise RdforgeError(f"{path} (from {e.package}): damaged gzip data ({err})") from None
            tree.remove(path)
            tree.add_file(path[:-3], data, e.mode, package=e.package)
    names = available(tree)
    if tree.get("usr/bin/loadkeys") is None or not names:
        if keymap:
            raise RdforgeError(f"keymap {keymap}: the image has no loadkeys or keymaps "
                               "(the packages kbd and console-data)")
        return []
    if keymap:
        if keymap not in names:
            near = [n for n in names if n.startswith(keymap.split("-")[0])][:8]
            raise RdforgeError(f"keymap {keymap}: console-data has no such keymap"
                               + (f" (similar: {', '.join(near)})" if near else ""))
        tree.remove("etc/vconsole.conf")
        tree.add_file("etc/vconsole.conf", f"KEYMAP={keymap}\n".encode())
        _keep_vconsole_conf(tree)
    tree.add_file(SCRIPT, SCRIPT_TEXT.encode(), 0o755)
    tree.add_file(f"{UNITDIR}/rdforge-console-keymap.service", UNIT.encode())
    tree.add_symlink(f"{UNITDIR}/sysinit.target.wants/rdforge-console-keymap.service",
                     "../rdforge-console-keymap.service")
    return [f"console keymap: {keymap or 'none configured'} ({len(names)} keymaps; chosen at "
            "boot by a vconsole.keymap credential or vconsole.keymap=)"]


DEBIAN_TMPFILES = "usr/lib/tmpfiles.d/debian.conf"


def _keep_vconsole_conf(tree: Tree) -> None:
    """Debian's systemd replaces /etc/vconsole.conf at boot by a symlink to
    /etc/default/keyboard (`L+` in tmpfiles.d/debian.conf), which the initrd lacks: when
    systemd-tmpfiles-setup ran before the keymap unit had read the file, the map was lost
    (seen in 2 of 6 boots on a busy machine). The image's vconsole.conf is its own."""
    e = tree.get(DEBIAN_TMPFILES)
    if e is None or e.data is None:
        return
    lines = e.data.decode("utf-8", "replace").splitlines(keepends=True)
    kept = [ln if not (ln.split()[1:2] == ["/etc/vconsole.conf"] and ln.startswith("L"))
            else "# rdforge: /etc/vconsole.conf is the image's own (its keymap)\n# " + ln
            for ln in lines]
    if kept != lines:
        tree.remove(DEBIAN_TMPFILES)
        tree.add_file(DEBIAN_TMPFILES, "".join(kept).encode(), e.mode, package=e.package)
