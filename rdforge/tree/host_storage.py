"""Host-only images (`--modules host-only`) carry what this machine's own root and resume
devices need at boot, as initramfs-tools' cryptroot and mdadm hooks do: the /etc/crypttab
lines of the encrypted devices under them, and mdadm.conf when an md array is among them.

The devices are found the way the kernel stacks them: the root's major:minor from
/proc/self/mountinfo, the resume device from /sys/power/resume and the active swap areas,
then down through each block device's `slaves/` in sysfs. A dm-crypt device names itself in
`dm/uuid` (`CRYPT-…`) and `dm/name`; its crypttab line is the one with that name. Lines that
key a device from /dev/urandom (swap or /tmp made anew at every boot) are never taken: such a
device is the running system's, and the initrd has nothing to resume from it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rdforge.tree.keymap import available
from rdforge.tree.model import Tree
from rdforge.tree.storage import MDADM_CONF

RANDOM_KEYS = ("/dev/urandom", "/dev/random", "/dev/hw_random")


@dataclass
class HostStack:
    crypt_names: set[str] = field(default_factory=set)  # dm-crypt devices under root/resume
    md: bool = False  # an md array is among them
    devices: list[str] = field(default_factory=list)  # every block device walked (for the report)


def _block_dir(sys_root: Path, majmin: str) -> Path | None:
    d = sys_root / "dev/block" / majmin
    return d if d.exists() else None


def _walk(sys_root: Path, d: Path, stack: HostStack, seen: set[str]) -> None:
    name = d.resolve().name if d.is_symlink() else d.name
    if name in seen:
        return
    seen.add(name)
    stack.devices.append(name)
    try:
        uuid = (d / "dm/uuid").read_text().strip()
        if uuid.startswith("CRYPT-"):
            stack.crypt_names.add((d / "dm/name").read_text().strip())
    except OSError:
        pass
    if (d / "md").is_dir():
        stack.md = True
    slaves = d / "slaves"
    if slaves.is_dir():
        for s in sorted(os.listdir(slaves)):
            below = sys_root / "class/block" / s
            if below.exists():
                _walk(sys_root, below, stack, seen)


def _root_majmin(proc_root: Path) -> str | None:
    try:
        lines = (proc_root / "self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if len(f) > 4 and f[4] == "/":
            return f[2]
    return None


def _swap_majmins(sys_root: Path, proc_root: Path) -> list[str]:
    out = []
    try:
        resume = (sys_root / "power/resume").read_text().strip()
        if resume and resume != "0:0":
            out.append(resume)
    except OSError:
        pass
    try:
        swaps = (proc_root / "swaps").read_text().splitlines()[1:]
    except OSError:
        swaps = []
    for line in swaps:
        dev = line.split()[0] if line.split() else ""
        name = Path(dev).name
        try:  # a swap partition or dm device, by its kernel name (not a swap file)
            out.append((sys_root / "class/block" / name / "dev").read_text().strip())
        except OSError:
            continue
    return out


def host_stack(sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc")) -> HostStack:
    stack = HostStack()
    seen: set[str] = set()
    for majmin in [_root_majmin(proc_root), *_swap_majmins(sys_root, proc_root)]:
        d = _block_dir(sys_root, majmin) if majmin else None
        if d is not None:
            _walk(sys_root, d, stack, seen)
    return stack


def crypttab_lines(crypttab: str, names: set[str]) -> list[str]:
    """The crypttab lines for these dm-crypt names, without random-key ones, and with a key
    file of the running system replaced by `none` (a prompt)."""
    out = []
    for line in crypttab.splitlines():
        f = line.split()
        if not f or f[0].startswith("#") or f[0] not in names:
            continue
        if len(f) > 2 and f[2] in RANDOM_KEYS:
            continue
        if len(f) > 2 and f[2] not in ("none", "-") and not f[2].startswith("/dev/"):
            # A key file on the running system stays there: copied into the initrd, it would
            # lie unencrypted in /boot. The initrd asks for the passphrase instead.
            f[2] = "none"
            out.append(" ".join(f))
            continue
        out.append(line.strip())
    return out


def host_storage(tree: Tree, host_root: Path = Path("/"), sys_root: Path = Path("/sys"),
                 proc_root: Path = Path("/proc")) -> list[str]:
    """Put this machine's crypttab lines and mdadm.conf into the tree; returns what was done,
    for the manifest."""
    stack = host_stack(sys_root, proc_root)
    done: list[str] = []
    if stack.crypt_names and tree.get("etc/crypttab") is not None:
        done.append("host-only: /etc/crypttab as configured (files), not this host's")
    elif stack.crypt_names:
        try:
            text = (host_root / "etc/crypttab").read_text()
        except (OSError, UnicodeDecodeError):
            text = ""
        lines = crypttab_lines(text, stack.crypt_names)
        if lines:
            tree.remove("etc/crypttab")
            tree.add_file("etc/crypttab", ("# rdforge: this host's root and resume devices\n"
                                           + "\n".join(lines) + "\n").encode())
            done.append(f"host-only: /etc/crypttab for {', '.join(sorted(stack.crypt_names))}")
        else:
            done.append(f"host-only: no /etc/crypttab line for {', '.join(sorted(stack.crypt_names))}"
                        " (rd.luks.* on the command line must name them)")
    if stack.md:
        try:
            conf = (host_root / "etc/mdadm/mdadm.conf").read_text()
        except (OSError, UnicodeDecodeError):
            conf = ""
        arrays = array_lines(conf)
        if arrays:
            tree.remove("etc/mdadm/mdadm.conf")
            tree.add_file("etc/mdadm/mdadm.conf", (MDADM_CONF + "# this host's arrays\n"
                                                   + "\n".join(arrays) + "\n").encode())
            done.append(f"host-only: the {len(arrays)} ARRAY lines of this host's mdadm.conf")
    return done


def array_lines(conf: str) -> list[str]:
    """mdadm.conf's ARRAY lines, each with its continuation lines. The rest (MAILADDR,
    HOMEHOST, PROGRAM) serves the running system; the initrd keeps its own HOMEHOST."""
    out: list[str] = []
    continues = False
    for line in conf.splitlines():
        if line.startswith("ARRAY"):
            out.append(line.rstrip())
            continues = True
        elif continues and line[:1].isspace() and line.strip() and not line.strip().startswith("#"):
            out[-1] += " " + line.strip()
        else:
            continues = False
    return out


def host_only(tree: Tree, keymap: str, host_root: Path = Path("/"), sys_root: Path = Path("/sys"),
              proc_root: Path = Path("/proc")) -> tuple[str, list[str]]:
    """The host-only stage: this machine's storage configuration into the tree (host_storage),
    and the keymap the image is to load: the configured one, else this machine's
    (host_keymap) when console-data has it. Returns the keymap and what was done."""
    done = host_storage(tree, host_root, sys_root, proc_root)
    if keymap:
        return keymap, done
    keymap, source = host_keymap(tree, host_root)
    if keymap and keymap not in available(tree):
        done.append(f"host-only: this host's keymap {keymap} ({source}) is not one of "
                    "console-data's; none configured")
        return "", done
    if keymap:
        done.append(f"host-only: keymap {keymap} from {source}")
    return keymap, done


MODEL_MAP = "usr/share/systemd/kbd-model-map"


def _assignments(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.strip().partition("=")
        if sep and not k.startswith("#"):
            out[k.strip()] = v.strip().strip("\"'")
    return out


def host_keymap(tree: Tree, host_root: Path = Path("/")) -> tuple[str, str]:
    """This machine's console keymap for a host-only image, and where it came from:
    /etc/vconsole.conf's KEYMAP, else Debian's /etc/default/keyboard (XKB layout and variant)
    mapped to a console keymap by systemd's kbd-model-map, the way localectl maps them."""
    try:
        km = _assignments((host_root / "etc/vconsole.conf").read_text()).get("KEYMAP", "")
        if km:
            return km, "/etc/vconsole.conf"
    except (OSError, UnicodeDecodeError):
        pass
    try:
        kb = _assignments((host_root / "etc/default/keyboard").read_text())
    except (OSError, UnicodeDecodeError):
        return "", ""
    layout = kb.get("XKBLAYOUT", "").split(",")[0]
    variant = kb.get("XKBVARIANT", "").split(",")[0] or "-"
    e = tree.get(MODEL_MAP)
    if not layout or layout == "us" and variant == "-" or e is None or e.data is None:
        return "", ""  # US is the kernel's own map
    rows = [r.split() for r in e.data.decode("utf-8", "replace").splitlines()
            if r.strip() and not r.startswith("#")]
    for want in (variant, "-"):
        for r in rows:
            if len(r) >= 4 and r[1] == layout and r[3] == want:
                return r[0], f"/etc/default/keyboard (XKBLAYOUT={layout}, XKBVARIANT={variant})"
    return "", ""
