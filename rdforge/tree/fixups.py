"""Declarative fix-ups that replace maintainer scripts: init, release files, users, ld.so.cache."""

from __future__ import annotations

import re
import shlex

from rdforge.errors import CheckError
from rdforge.formats import ldcache
from rdforge.formats.elf import is_elf, read_elf
from rdforge.tree.model import CHAR, DIR, FILE, SYMLINK, Entry, Tree

LIBDIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib")
UNITDIR = "usr/lib/systemd/system"


def _unit_lines(tree: Tree, unit: str) -> list[str]:
    e = tree.get(f"{UNITDIR}/{unit}")
    return e.data.decode(errors="replace").splitlines() if e is not None and e.kind == FILE else []


def credential_conditions(globs: list[str]) -> list[str]:
    """Triggering conditions that hold when a system credential matching one of the globs was
    passed, plain or encrypted (the directories the service manager puts them in)."""
    return [f"ConditionPathExistsGlob=|/run/credentials/@{kind}/{g}"
            for g in globs for kind in ("system", "encrypted")]


def base_layout(tree: Tree) -> None:
    """Mount points, /dev/console for the kernel's first open, /init -> systemd."""
    for d in ("dev", "proc", "sys", "run", "tmp", "root", "sysroot", "var/tmp", "etc", "mnt"):
        tree.add(d, Entry(DIR, 0o1777 if d.endswith("tmp") else 0o755))
    tree.add("dev/console", Entry(CHAR, 0o600, rdev=(5, 1)))
    tree.add("dev/null", Entry(CHAR, 0o666, rdev=(1, 3)))
    if tree.get("usr/lib/systemd/systemd") is None:
        raise CheckError("the package set has no usr/lib/systemd/systemd to run as /init")
    tree.add_symlink("init", "usr/lib/systemd/systemd")
    if tree.get("usr/bin/sh") is None and tree.get("usr/bin/bash") is not None:
        tree.add_symlink("usr/bin/sh", "bash")
    tree.add_file("etc/machine-id", b"", 0o444)
    tree.add_file("etc/fstab", b"# the root file system comes from root= on the kernel command line\n")


def release_files(tree: Tree, extra: dict[str, str]) -> dict[str, str]:
    """/usr/lib/initrd-release from the distribution's os-release, linked where systemd looks."""
    osrel = tree.get("usr/lib/os-release")
    fields: dict[str, str] = {}
    if osrel is not None and osrel.kind == FILE:
        for line in osrel.data.decode().splitlines():
            k, sep, v = line.partition("=")
            if sep and not k.startswith("#"):
                fields[k.strip()] = shlex.split(v)[0] if v.strip() else ""
    fields.update({"VARIANT": "Initrd (rdforge)", "VARIANT_ID": "rdforge-initrd"})
    fields.update(extra)
    text = "".join(f"{k}={shlex.quote(v) if re.search(r'[^A-Za-z0-9._-]', v) else v}\n"
                   for k, v in fields.items())
    tree.add_file("usr/lib/initrd-release", text.encode())
    for p in ("etc/initrd-release", "etc/os-release"):
        tree.remove(p)
    tree.add_symlink("etc/initrd-release", "../usr/lib/initrd-release")
    tree.add_symlink("etc/os-release", "initrd-release")
    return fields


def sysusers(tree: Tree) -> tuple[list[str], list[str]]:
    """passwd and group lines from usr/lib/sysusers.d/*.conf, IDs allocated deterministically
    downwards from 999 as systemd-sysusers does for system users."""
    users: dict[str, tuple[int, int, str, str, str]] = {}
    groups: dict[str, int] = {}
    members: dict[str, list[str]] = {}
    pending: list[tuple[str, list[str]]] = []
    for name in tree.listdir("usr/lib/sysusers.d"):
        e = tree.get(f"usr/lib/sysusers.d/{name}")
        if not name.endswith(".conf") or e is None or e.kind != FILE:
            continue
        for line in e.data.decode().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                words = shlex.split(line)
            except ValueError:
                continue
            # "u!" is a user whose account is locked: every account here is.
            pending.append((words[0].rstrip("!"), words[1:]))
    used = {0, 65534}
    for kind, w in pending:  # fixed IDs first
        if kind == "g" and len(w) > 1 and w[1].isdigit():
            groups.setdefault(w[0], int(w[1]))
            used.add(int(w[1]))
        if kind == "u" and len(w) > 1 and w[1].split(":")[0].isdigit():
            used.add(int(w[1].split(":")[0]))
    nxt = 999

    def alloc() -> int:
        nonlocal nxt
        while nxt in used:
            nxt -= 1
        used.add(nxt)
        return nxt

    for kind, w in pending:
        if kind == "g" and w[0] not in groups:
            groups[w[0]] = alloc()
        elif kind == "u" and w[0] not in users:
            idspec = w[1] if len(w) > 1 else "-"
            uid_s, _, gid_s = idspec.partition(":")
            uid = int(uid_s) if uid_s.isdigit() else alloc()
            if gid_s.isdigit():
                gid = int(gid_s)
            elif gid_s:
                gid = groups.setdefault(gid_s, alloc())
            else:
                gid = groups.setdefault(w[0], uid)
            gecos = w[2] if len(w) > 2 and w[2] != "-" else ""
            home = w[3] if len(w) > 3 and w[3] != "-" else ("/root" if uid == 0 else "/")
            shell = w[4] if len(w) > 4 and w[4] != "-" else (
                "/bin/sh" if uid == 0 else "/usr/sbin/nologin")
            users[w[0]] = (uid, gid, gecos, home, shell)
        elif kind == "m" and len(w) > 1:
            members.setdefault(w[1], []).append(w[0])
    users.setdefault("root", (0, 0, "root", "/root", "/bin/sh"))
    groups.setdefault("root", 0)
    passwd = [f"{n}:x:{u}:{g}:{c}:{h}:{s}" for n, (u, g, c, h, s) in
              sorted(users.items(), key=lambda t: t[1][0])]
    group = [f"{n}:x:{g}:{','.join(sorted(members.get(n, [])))}" for n, g in
             sorted(groups.items(), key=lambda t: t[1])]
    return passwd, group


ROOT_PASSWORD = "rdforge-root-password.service"
ROOT_FALLBACK = "rdforge-root-account.service"
FORGET_ROOT = "usr/lib/rdforge/forget-root"
SYSUSERS_ROOT = """ExecStart=systemd-sysusers --inline 'u root 0:0 "Super User" /root'\n"""

# Root is made at build time, locked like every account here. A passwd.* credential (the
# hashed or plain root password, root's shell) is applied at boot: root is taken out of
# passwd and shadow, and systemd-sysusers makes it again from the credentials. Without such
# a credential the unit does not start, so it costs nothing on a plain boot.
# tpm2.target: a credential sealed to the TPM is unsealed only once the TPM is there.
# A credential that does not decrypt fails the unit before anything ran: root stays as
# built. Should systemd-sysusers fail after root was taken out, the fallback makes root again,
# locked (sulogin needs an entry to say the account is locked).
ROOT_PASSWORD_UNIT = f"""[Unit]
Description=Root password from credentials
DefaultDependencies=no
{chr(10).join(credential_conditions(["passwd.*"]))}
After=systemd-tmpfiles-setup-dev-early.service tpm2.target
Before=sysinit.target systemd-tmpfiles-setup.service emergency.service rescue.service
OnFailure={ROOT_FALLBACK}
Conflicts=shutdown.target initrd-switch-root.target
Before=shutdown.target initrd-switch-root.target

[Service]
Type=oneshot
RemainAfterExit=yes
ImportCredential=passwd.*
ExecStartPre=/{FORGET_ROOT}
{SYSUSERS_ROOT}"""
ROOT_FALLBACK_UNIT = f"""[Unit]
Description=Root account, locked without a password
DefaultDependencies=no
After={ROOT_PASSWORD}
Before=sysinit.target systemd-tmpfiles-setup.service emergency.service rescue.service
Conflicts=shutdown.target initrd-switch-root.target
Before=shutdown.target initrd-switch-root.target

[Service]
Type=oneshot
RemainAfterExit=yes
{SYSUSERS_ROOT}"""
# Reads each file whole, then writes it back without root's line (bash builtins only: the
# image has no sed or grep).
FORGET_ROOT_SCRIPT = """#!/bin/bash
# rdforge: take root out of passwd and shadow so that systemd-sysusers makes it again with
# the password from a credential (it never changes an account that exists).
set -e
for f in /etc/passwd /etc/shadow; do
    mapfile -t lines < "$f"
    for line in "${lines[@]}"; do
        [[ $line == root:* ]] || printf '%s\\n' "$line"
    done > "$f"
done
"""


def users_and_groups(tree: Tree) -> None:
    """passwd/group/shadow for the system accounts of sysusers.d and root, all locked. A
    vendor image carries no root password of its own: root's comes from a credential at
    boot (ROOT_PASSWORD_UNIT). systemd-sysusers.service keeps its stock conditions: with
    every account made here it has nothing to do."""
    passwd, group = sysusers(tree)
    tree.add_file("etc/passwd", ("\n".join(passwd) + "\n").encode())
    tree.add_file("etc/group", ("\n".join(group) + "\n").encode())
    shadow = "".join(f"{line.split(':')[0]}:!*:1::::::\n" for line in passwd)
    tree.add_file("etc/shadow", shadow.encode(), 0o000)
    gshadow = "".join(f"{line.split(':')[0]}:!*::\n" for line in group)
    tree.add_file("etc/gshadow", gshadow.encode(), 0o000)
    if tree.get(f"{UNITDIR}/systemd-tmpfiles-setup-dev.service") is not None:
        # The second pass over /dev exists for users and groups systemd-sysusers makes at
        # boot; here all are made now, so the first pass (-early) has already done it all,
        # unless a sysusers.extra credential brings more: a program start spared.
        tree.add_file(f"{UNITDIR}/systemd-tmpfiles-setup-dev.service.d/10-rdforge.conf",
                      b"[Unit]\nConditionCredential=sysusers.extra\n")
    if tree.get("usr/bin/systemd-sysusers") is not None and tree.get("usr/bin/bash") is not None:
        tree.add_file(FORGET_ROOT, FORGET_ROOT_SCRIPT.encode(), 0o755)
        for name, unit in ((ROOT_PASSWORD, ROOT_PASSWORD_UNIT), (ROOT_FALLBACK, ROOT_FALLBACK_UNIT)):
            tree.add_file(f"{UNITDIR}/{name}", unit.encode())
        tree.add_symlink(f"{UNITDIR}/sysinit.target.wants/{ROOT_PASSWORD}", f"../{ROOT_PASSWORD}")


# Units an initrd has no job for: API file systems nothing before switch-root uses, binfmt
# handlers. Each would cost a mount or a program start on every boot. Their unit files stay,
# so a drop-in or a sysext can still start them; only the links that start them on every
# boot go.
NOT_STARTED = (
    "sysinit.target.wants/dev-hugepages.mount", "sysinit.target.wants/dev-mqueue.mount",
    "sysinit.target.wants/sys-kernel-config.mount", "sysinit.target.wants/sys-kernel-debug.mount",
    "sysinit.target.wants/sys-kernel-tracing.mount",
    "sysinit.target.wants/proc-sys-fs-binfmt_misc.automount",
    "sysinit.target.wants/systemd-binfmt.service", "local-fs.target.wants/run-lock.mount",
)
# Units pulled in by something other than a link, masked in the initrd's /etc: a tmpfs over
# a /tmp that is already in RAM (basic.target wants it by name), and the FUSE control file
# system, which udev asks for when it sees the fuse module (built in or not) and which costs
# a modprobe and a mount.
MASKED = ("tmp.mount", "sys-fs-fuse-connections.mount")


def unit_binary_missing(tree: Tree, unit: str) -> bool:
    """A service whose ExecStart= program is not in the image (it was pruned)."""
    for line in _unit_lines(tree, unit):
        if line.startswith("ExecStart="):
            prog = line.partition("=")[2].lstrip("-@:+!").split(" ", 1)[0]
            if prog.startswith("/"):
                return tree.get(prog.lstrip("/")) is None
    return False


NOT_IN_INITRD = re.compile(r"(?:Condition|Assert)PathExists=!/etc/initrd-release\s*")


def never_in_initrd(tree: Tree, unit: str) -> bool:
    """A unit whose own condition (not a triggering one) rules out every initrd: random seed,
    journal flush to /var, TPM setup of the full system, PCR phases, ... The manager would
    load it on every boot to find that out."""
    return any(NOT_IN_INITRD.fullmatch(line) for line in _unit_lines(tree, unit))


def boot_path(tree: Tree) -> list[str]:
    """Take off the boot what an initrd does not need; returns the unit links removed.
    Also drops sockets of services whose programs were pruned (hostnamed, pcrlock, ...) and
    links to units that never run in an initrd."""
    gone = [link for link in NOT_STARTED if tree.get(f"{UNITDIR}/{link}", follow=False)]
    gone += sorted(p[len(UNITDIR) + 1:] for p, e in tree.entries.items()
                   if p.startswith(UNITDIR + "/") and ".wants/" in p and e.kind == SYMLINK
                   and never_in_initrd(tree, p.rpartition("/")[2]))
    for link in gone:
        tree.remove(f"{UNITDIR}/{link}")
    for unit in MASKED:
        if tree.get(f"{UNITDIR}/{unit}") is not None:
            tree.add_symlink(f"etc/systemd/system/{unit}", "/dev/null")
            gone.append(f"{unit} (masked)")
    for p, e in sorted(tree.entries.items()):
        if not (p.startswith(UNITDIR + "/") and ".wants/" in p and p.endswith(".socket")
                and e.kind == SYMLINK):
            continue
        stem = p.rpartition("/")[2].removesuffix(".socket")
        # The service it starts: NAME.service, or NAME@.service for Accept=yes sockets.
        if any(unit_binary_missing(tree, f"{stem}{at}.service") for at in ("", "@")):
            tree.remove(p)
            gone.append(p[len(UNITDIR) + 1:])
    return sorted(gone)


# Subsystems of the devices a root file system sits on, and their parents: the initrd's
# coldplug sends their events first, ahead of the stock order, so that storage drivers load
# while the other events are still queued.
STORAGE_SUBSYSTEMS = ("block", "pci", "virtio", "scsi", "nvme", "usb", "mmc")
# Terminals and virtual consoles (some seventy devices): the initrd runs no getty and talks to
# /dev/console; the root's coldplug applies their rules. Left out, the root disk's event (which
# queues behind everything already sent) is handled that much sooner.
NOT_COLDPLUGGED = ("tty", "vc", "vtconsole")


def _when_there_is_input(tree: Tree, unit: str, dirs: tuple[str, ...]) -> bool:
    """A drop-in that starts a unit whose only job is to apply configuration only when there
    is some: one of its configuration directories is not empty, or one of the credentials it
    imports was passed (plain or encrypted, where the service manager puts them)."""
    lines = _unit_lines(tree, unit)
    globs = [line.partition("=")[2].strip() for line in lines if line.startswith("ImportCredential=")]
    if not lines:
        return False
    conds = [f"ConditionDirectoryNotEmpty=|{d}" for d in dirs] + credential_conditions(globs)
    tree.add_file(f"{UNITDIR}/{unit}.d/10-rdforge.conf", "\n".join(["[Unit]", *conds, ""]).encode())
    return True


# Orderings that hold udevd back in an initrd to no purpose: stock systemd starts it after
# the accounts are made (systemd-sysusers) and after the static device nodes (tmpfiles for /dev),
# so that rules naming a group find it. Here every account and group is made at build time;
# those units run only for a credential (sysusers.extra, tmpfiles.*) and then beside udevd.
# Even when they skip, the ordering made udevd wait for the early tmpfiles run: a program start
# on the way to the root disk. (unit, ordering key, the unit taken out of it)
UDEVD_UNORDERED = (("systemd-udevd.service", "After", "systemd-sysusers.service"),
                   ("systemd-tmpfiles-setup-dev-early.service", "Before", "systemd-udevd.service"),
                   ("systemd-tmpfiles-setup-dev.service", "Before", "systemd-udevd.service"))


def _without_order(tree: Tree, unit: str, key: str, other: str) -> bool:
    """An ordering cannot be taken back by a drop-in: the unit is copied to /etc/systemd/system
    (which comes before the stock file; drop-ins still apply) with `other` taken out of its
    `key=` lines."""
    lines = _unit_lines(tree, unit)
    out, changed = [], False
    for line in lines:
        k, sep, value = line.partition("=")
        if sep and k == key and other in value.split():
            changed = True
            rest = [u for u in value.split() if u != other]
            if not rest:
                continue
            line = f"{k}={' '.join(rest)}"
        out.append(line)
    if not changed:
        return False
    head = f"# rdforge: {UNITDIR}/{unit} without {other} in {key}= (see the manifest)"
    tree.add_file(f"etc/systemd/system/{unit}", "\n".join([head, *out, ""]).encode())
    return True


def boot_order(tree: Tree) -> list[str]:
    """Drop-ins that shorten the initrd's way to switch-root without changing what happens
    on it. Returns the units given one.
    - Coldplug sends the events of devices, storage first, not those of kernel modules and
      drivers (some two hundred objects no initrd rule acts on; the root's coldplug sends
      them all again) nor of terminals. The root disk's own event comes after everything
      already queued.
    - udev's credential loader and systemd-sysctl start only when there is a credential or a
      configuration file for them. (The loader is ordered before udevd: it held udevd back.)
    - initrd-parse-etc starts initrd-cleanup itself (OnSuccess=, the same job mode as the
      systemctl call it replaces): one program start less between mount and switch-root.
      (initrd-cleanup keeps its systemctl call: isolating from the manager once the unit
      stopped would leave the job queue empty for a moment, and the manager would count the
      boot as finished in the initrd and stop showing status on the console.)
    - udevd starts as soon as its sockets listen (UDEVD_UNORDERED)."""
    changed = []
    for unit, key, other in UDEVD_UNORDERED:
        if _without_order(tree, unit, key, other):
            changed.append(f"{unit} (without {other} in {key}=)")
    for line in _unit_lines(tree, "systemd-udev-trigger.service"):
        m = re.match(r"ExecStart=(-?\S*udevadm trigger) (?:--type=all )?(.*?)"
                     r"(?: --prioritized-subsystem=(\S+))?$", line)
        if m:
            stock = [s for s in (m.group(3) or "").split(",") if s]
            order = list(STORAGE_SUBSYSTEMS) + [s for s in stock if s not in STORAGE_SUBSYSTEMS
                                                and s not in NOT_COLDPLUGGED]
            skip = "".join(f" --subsystem-nomatch={s}" for s in NOT_COLDPLUGGED)
            tree.add_file(f"{UNITDIR}/systemd-udev-trigger.service.d/10-rdforge.conf",
                          f"[Service]\nExecStart=\nExecStart={m.group(1)} --type=devices "
                          f"{m.group(2)}{skip} --prioritized-subsystem={','.join(order)}\n".encode())
            changed.append("systemd-udev-trigger.service")
            break
    # Integrity volumes come only from /etc/integritytab (no kernel command line option):
    # an image built without one has nothing for the generator to read at any boot.
    gen = "usr/lib/systemd/system-generators/systemd-integritysetup-generator"
    if tree.get("etc/integritytab") is None and tree.get(gen) is not None:
        tree.remove(gen)
        changed.append("systemd-integritysetup-generator (removed)")
    if _when_there_is_input(tree, "systemd-udev-load-credentials.service", ()):
        changed.append("systemd-udev-load-credentials.service")
    if _when_there_is_input(tree, "systemd-sysctl.service",
                            tuple(f"{d}/sysctl.d" for d in ("/etc", "/run", "/usr/local/lib", "/usr/lib"))):
        changed.append("systemd-sysctl.service")
    lines = _unit_lines(tree, "initrd-parse-etc.service")
    starts = [line for line in lines if line.startswith("ExecStart=")]
    handover = "ExecStart=systemctl --no-block start initrd-cleanup.service"
    if handover in starts:
        rest = "".join(f"{line}\n" for line in starts if line != handover)
        tree.add_file(f"{UNITDIR}/initrd-parse-etc.service.d/10-rdforge.conf",
                      ("[Unit]\nOnSuccess=initrd-cleanup.service\nOnSuccessJobMode=replace\n\n"
                       f"[Service]\nExecStart=\n{rest}").encode())
        changed.append("initrd-parse-etc.service")
    return changed


FS_MODULE_RULE = """\
# rdforge: load a file system's module as soon as blkid names it on a block device, in a
# unit of its own, so that it loads while fsck runs instead of when mount first needs it.
ACTION=="add", SUBSYSTEM=="block", ENV{ID_FS_USAGE}=="filesystem", ENV{ID_FS_TYPE}=="?*", \\
  TAG+="systemd", ENV{SYSTEMD_WANTS}+="modprobe@fs-$env{ID_FS_TYPE}.service"
"""


def fs_module_rule(tree: Tree) -> bool:
    """Install FS_MODULE_RULE where modprobe@.service exists (it is systemd's, with modprobe
    errors ignored, so a type without a module costs nothing)."""
    if tree.get(f"{UNITDIR}/modprobe@.service") is None:
        return False
    tree.add_file("usr/lib/udev/rules.d/62-rdforge-fs-modules.rules", FS_MODULE_RULE.encode())
    return True


def static_nodes(tree: Tree, kver: str) -> int:
    """The device nodes that load their module when opened (modules.devname), as a
    tmpfiles.d file made now instead of by kmod-static-nodes.service at every boot (which
    then skips: its condition is a non-empty modules.devname). Returns the number of nodes."""
    path = f"usr/lib/modules/{kver}/modules.devname"
    e = tree.get(path)
    if e is None or e.kind != FILE:
        return 0
    lines: list[str] = []
    dirs: set[str] = set()
    for raw in e.data.decode().splitlines():
        w = raw.split()
        if len(w) != 3 or raw.startswith("#") or w[2][0] not in "cb":
            continue
        _module, devname, spec = w
        parent = devname.rpartition("/")[0]
        if parent and parent not in dirs:
            dirs.add(parent)
            lines.append(f"d /dev/{parent} 0755 - - -")
        lines.append(f"{spec[0]}! /dev/{devname} 0600 - - - {spec[1:]}")
    tree.add_file("usr/lib/tmpfiles.d/static-nodes.conf",
                  ("# Made by rdforge from modules.devname\n" + "\n".join(lines) + "\n").encode())
    tree.remove(path)
    return sum(1 for line in lines if not line.startswith("d "))


def shared_libraries(tree: Tree) -> dict[str, str]:
    """soname -> canonical path of every shared library in the library directories."""
    libs: dict[str, str] = {}
    for d in LIBDIRS:
        real = tree.resolve(d)
        if tree.entries.get(real) is None or tree.entries[real].kind != DIR:
            continue
        for name in tree.listdir(real):
            if not name.startswith(("lib", "ld-")) or ".so" not in name:
                continue
            e = tree.get(f"{real}/{name}")
            if e is None or e.kind != FILE or not is_elf(e.data):
                continue
            info = read_elf(e.data)
            if info.soname == name:
                libs.setdefault(name, f"/{real}/{name}")
    return libs


def ld_so_cache(tree: Tree) -> int:
    libs = shared_libraries(tree)
    tree.add_file("etc/ld.so.cache", ldcache.build(libs))
    return len(libs)


def drop_dangling(tree: Tree) -> list[str]:
    """Remove symlinks whose target was pruned (e.g. into usr/share/doc)."""
    gone = []
    for p, e in list(tree.entries.items()):
        if e.kind == SYMLINK and p not in ("init",):
            target = tree.resolve(p)
            if target not in tree.entries and not target.startswith(("proc", "sys", "dev", "run")):
                gone.append(p)
    for p in gone:
        tree.entries.pop(p, None)
    return sorted(gone)


def enable_sysext(tree: Tree, image_policy: str) -> None:
    """Merge system extensions in the initrd (systemd-sysext.service, which a distribution
    enables from its preset, pulled in by sysinit.target) under the given image policy."""
    unit = "usr/lib/systemd/system/systemd-sysext.service"
    if tree.get(unit) is None or not image_policy:
        return
    if not re.fullmatch(r"[A-Za-z0-9=+:_-]+", image_policy):
        raise CheckError(f"sysext image policy {image_policy!r} has characters an image policy "
                         "never contains")
    tree.add_symlink("usr/lib/systemd/system/sysinit.target.wants/systemd-sysext.service",
                     "../systemd-sysext.service")
    cmd = f"systemd-sysext refresh --image-policy={image_policy}"
    # Unmerging happens while switch-root is under way; a manager reload at that moment
    # (which extensions ask for with EXTENSION_RELOAD_MANAGER=1) makes it unmount /sysroot.
    tree.add_file("usr/lib/systemd/system/systemd-sysext.service.d/10-rdforge.conf",
                  f"[Service]\nExecStart=\nExecStart={cmd}\nExecReload=\nExecReload={cmd}\n"
                  "ExecStop=\nExecStop=systemd-sysext unmerge --no-reload\n"
                  # Its messages (a refused image above all) to the kernel log, so that they
                  # reach the console as well as the journal.
                  "Environment=SYSTEMD_LOG_TARGET=kmsg\n".encode())
