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


def base_layout(tree: Tree) -> None:
    """Mount points, /dev/console for the kernel's first open, /init -> systemd."""
    for d in ("dev", "proc", "sys", "run", "tmp", "root", "sysroot", "var/tmp", "etc", "mnt"):
        tree.add(d, Entry(DIR, 0o1777 if d.endswith("tmp") else 0o755, package="rdforge"))
    tree.add("dev/console", Entry(CHAR, 0o600, rdev=(5, 1), package="rdforge"))
    tree.add("dev/null", Entry(CHAR, 0o666, rdev=(1, 3), package="rdforge"))
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


def _root_unit(description: str, after: str, credentials: str) -> str:
    """A oneshot that makes root with systemd-sysusers (a no-op once root exists), ordered
    before anything that could ask for the root password."""
    return f"""[Unit]
Description={description}
DefaultDependencies=no
After={after}
Before=sysinit.target systemd-tmpfiles-setup.service emergency.service rescue.service
Conflicts=shutdown.target initrd-switch-root.target
Before=shutdown.target initrd-switch-root.target

[Service]
Type=oneshot
RemainAfterExit=yes
{credentials}ExecStart=systemd-sysusers --inline 'u root 0:0 "Super User" /root'
"""


# Root is the one account made at boot: systemd-sysusers takes its password from the
# passwd.hashed-password.root (or plaintext) credential. This runs beside udevd, not before
# it as systemd-sysusers.service would (udevd waits for that one). tpm2.target: a credential
# sealed to the TPM is unsealed only once the TPM is there.
ROOT_PASSWORD_UNIT = _root_unit("Root password from credentials",
                                "systemd-tmpfiles-setup-dev-early.service tpm2.target",
                                "ImportCredential=passwd.*\n")
# A credential that does not decrypt fails the unit above before it runs; root must still
# exist (locked), or sulogin finds no password database at all. No credentials here.
ROOT_FALLBACK_UNIT = _root_unit("Root account, locked without a password", ROOT_PASSWORD, "")


def users_and_groups(tree: Tree) -> None:
    """passwd/group/shadow for the system accounts of sysusers.d, all locked, except root:
    root is created at boot by systemd-sysusers, which takes its password from the
    passwd.hashed-password.root (or plaintext) credential and leaves it locked without one.
    A vendor image carries no root password of its own. systemd-sysusers.service keeps its
    stock conditions: with every other account made here it has nothing to do."""
    passwd, group = sysusers(tree)
    passwd = [line for line in passwd if not line.startswith("root:")]
    tree.add_file("etc/passwd", ("\n".join(passwd) + "\n").encode())
    tree.add_file("etc/group", ("\n".join(group) + "\n").encode())
    shadow = "".join(f"{line.split(':')[0]}:!*:1::::::\n" for line in passwd)
    tree.add_file("etc/shadow", shadow.encode(), 0o000)
    gshadow = "".join(f"{line.split(':')[0]}:!*::\n" for line in group)
    tree.add_file("etc/gshadow", gshadow.encode(), 0o000)
    if tree.get(f"{UNITDIR}/systemd-tmpfiles-setup-dev.service") is not None:
        # The second pass over /dev exists for users and groups systemd-sysusers makes at
        # boot; here all are made now, so the first pass (-early) has already done it all,
        # unless a sysusers.extra credential brings more. Off the way to udevd, then.
        tree.add_file(f"{UNITDIR}/systemd-tmpfiles-setup-dev.service.d/10-rdforge.conf",
                      b"[Unit]\nConditionCredential=sysusers.extra\n")
    if tree.get("usr/bin/systemd-sysusers") is not None:
        for name, unit in ((ROOT_PASSWORD, ROOT_PASSWORD_UNIT), (ROOT_FALLBACK, ROOT_FALLBACK_UNIT)):
            tree.add_file(f"usr/lib/systemd/system/{name}", unit.encode())
            tree.add_symlink(f"usr/lib/systemd/system/sysinit.target.wants/{name}", f"../{name}")


# Units an initrd has no job for: API file systems nothing before switch-root uses, binfmt
# handlers, a tmpfs over a /tmp that is already in RAM. Each would cost a mount or a program
# start on every boot. Their unit files stay, so a drop-in or a sysext can still start them;
# only the links that start them on every boot go.
NOT_STARTED = (
    "sysinit.target.wants/dev-hugepages.mount", "sysinit.target.wants/dev-mqueue.mount",
    "sysinit.target.wants/sys-fs-fuse-connections.mount",
    "sysinit.target.wants/sys-kernel-config.mount", "sysinit.target.wants/sys-kernel-debug.mount",
    "sysinit.target.wants/sys-kernel-tracing.mount",
    "sysinit.target.wants/proc-sys-fs-binfmt_misc.automount",
    "sysinit.target.wants/systemd-binfmt.service", "local-fs.target.wants/tmp.mount",
    "local-fs.target.wants/run-lock.mount",
)


def unit_binary_missing(tree: Tree, unit: str) -> bool:
    """A service whose ExecStart= program is not in the image (it was pruned)."""
    e = tree.get(f"{UNITDIR}/{unit}")
    if e is None or e.kind != FILE:
        return False
    for line in e.data.decode(errors="replace").splitlines():
        if line.startswith("ExecStart="):
            prog = line.partition("=")[2].lstrip("-@:+!").split(" ", 1)[0]
            if prog.startswith("/"):
                return tree.get(prog.lstrip("/")) is None
    return False


def boot_path(tree: Tree) -> list[str]:
    """Take off the boot what an initrd does not need; returns the unit links removed.
    Also drops sockets of services whose programs were pruned (hostnamed, pcrlock, ...)."""
    gone = [link for link in NOT_STARTED if tree.get(f"{UNITDIR}/{link}", follow=False)]
    for link in gone:
        tree.remove(f"{UNITDIR}/{link}")
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
