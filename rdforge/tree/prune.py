"""What an initrd never uses: documentation, man pages, locales, headers, static libraries, ..."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from rdforge.tree.model import FILE, Tree

DEFAULT_PRUNE: tuple[str, ...] = (
    "usr/share/doc/*", "usr/share/doc-base/*", "usr/share/man/*", "usr/share/info/*",
    "usr/share/locale/*", "usr/share/i18n/*", "usr/lib/locale/*", "usr/share/lintian/*",
    "usr/share/bash-completion/*", "usr/share/zsh/*", "usr/share/fish/*", "usr/include/*",
    "*.a", "usr/share/bug/*", "usr/share/gtk-doc/*", "usr/share/pkgconfig/*",
    "usr/lib/*/pkgconfig/*", "usr/share/common-licenses/*", "usr/share/menu/*",
    "usr/lib/systemd/catalog/*", "usr/share/polkit-1/*", "usr/share/factory/*",
    "usr/lib/udev/hwdb.d/*", "usr/lib/udev/hwdb.bin", "usr/share/gcc/*", "usr/share/gdb/*",
    "usr/share/debconf/*", "usr/share/perl5/*", "usr/share/pam-configs/*",
    "usr/share/readline/*", "usr/lib/*/gconv/*", "var/lib/dpkg/*", "var/cache/*",
    "etc/cron.*", "etc/logrotate.d/*", "etc/init.d/*", "etc/rc?.d/*", "etc/default/*",
    "etc/update-motd.d/*", "usr/share/base-files/*", "usr/share/mime/*",
    "usr/lib/systemd/tests/*",
    # PAM modules: no login session is opened in an initrd (sulogin does not use PAM).
    "usr/lib/*/security/*",
    # Services and tools that have no job before the root file system is mounted.
    "usr/lib/systemd/systemd-networkd*", "usr/bin/networkctl", "usr/lib/systemd/network/*",
    "usr/lib/systemd/systemd-logind", "usr/bin/loginctl", "usr/lib/systemd/systemd-pcrlock",
    "usr/lib/systemd/systemd-timedated", "usr/bin/timedatectl", "usr/lib/systemd/systemd-localed",
    "usr/bin/localectl", "usr/lib/systemd/systemd-hostnamed", "usr/lib/systemd/systemd-userdbd",
    "usr/bin/userdbctl", "usr/lib/systemd/systemd-userwork", "usr/lib/systemd/user/*",
    "usr/lib/systemd/user-generators/*", "usr/lib/systemd/systemd-update-utmp",
    "usr/lib/systemd/systemd-user-sessions", "usr/lib/systemd/systemd-socket-proxyd",
    "usr/lib/systemd/systemd-storagetm", "usr/bin/systemd-cgls", "usr/bin/systemd-cgtop",
    "usr/bin/busctl", "usr/bin/systemd-inhibit", "usr/bin/systemd-id128",
    "usr/sbin/debugfs", "usr/sbin/mke2fs", "usr/sbin/mkfs.*", "usr/sbin/e2image",
    "usr/sbin/e4defrag", "usr/sbin/e4crypt", "usr/sbin/resize2fs", "usr/sbin/tune2fs",
    "usr/sbin/e2label", "usr/sbin/e2undo", "usr/sbin/mklost+found", "usr/sbin/badblocks",
    "usr/bin/lscpu", "usr/sbin/zramctl", "usr/sbin/mkswap", "usr/sbin/swaplabel",
    "usr/bin/partx", "usr/bin/lastlog2", "usr/bin/setterm", "usr/bin/lslogins",
    "usr/bin/chfn", "usr/bin/chsh", "usr/bin/su", "usr/bin/newgrp", "usr/bin/last",
    "usr/bin/lastb", "usr/bin/wall", "usr/bin/write", "usr/bin/script*", "usr/bin/cal",
    # Generators for what an initrd never has: gettys, SysV and rc.local scripts, offline
    # updates, sshd (an extension that brings sshd also brings its own units).
    "usr/lib/systemd/system-generators/systemd-getty-generator",
    "usr/lib/systemd/system-generators/systemd-rc-local-generator",
    "usr/lib/systemd/system-generators/systemd-sysv-generator",
    "usr/lib/systemd/system-generators/systemd-system-update-generator",
    "usr/lib/systemd/system-generators/systemd-ssh-generator",
    # udev rules for seats, input, sound, video, sensors and power tuning: no session
    # runs in an initrd. Storage, device mapper, firmware, network naming stay.
    *(f"usr/lib/udev/rules.d/{r}.rules" for r in (
        "60-autosuspend", "60-drm", "60-evdev", "60-infiniband", "60-input-id",
        "60-persistent-alsa", "60-persistent-input", "60-persistent-v4l", "60-sensor",
        "60-serial", "60-persistent-storage-tape", "70-camera", "70-joystick", "70-memory",
        "70-mouse", "70-power-switch", "70-touchpad", "70-uaccess", "71-seat", "73-seat-late",
        "78-sound-card", "90-iocost", "96-e2scrub")),
    "usr/lib/udev/dmi_memory_id", "usr/lib/udev/iocost", "usr/lib/udev/v4l_id",
    # Debian's sysctl settings for the running system: core files named "core" (the kernel's
    # default anyway) and a larger PID space. The root's systemd-sysctl applies them; in the
    # initrd they only cost a program start (which then skips: nothing left to apply).
    "usr/lib/sysctl.d/10-coredump-debian.conf", "usr/lib/sysctl.d/50-pid-max.conf",
    # lvm2 and mdadm: what serves the running system, not activation. dmeventd and its
    # plugins monitor (the root system's job; liblvm2cmd goes with them), lvmpolld polls
    # long operations, the rest are admin scripts. mdmon serves external-metadata
    # containers (IMSM, DDF), whose udev rules also need coreutils: not in the image.
    "usr/sbin/dmeventd", "usr/lib/*/device-mapper/*", "usr/lib/*/libdevmapper-event-lvm2*",
    "usr/sbin/lvmpolld", "usr/sbin/lvmdump", "usr/sbin/fsadm", "usr/sbin/blkdeactivate",
    "usr/sbin/lvm_import_vdo", "usr/sbin/lvmdbusd", "etc/lvm/profile/*", "usr/sbin/mdmon",
    "usr/share/mdadm/*", "usr/share/initramfs-tools/*", "usr/share/apport/*", "etc/logcheck/*",
    "usr/lib/systemd/system-shutdown/mdadm.shutdown",
    # Tools of a running system's administration that nothing before switch-root runs, nor
    # an emergency shell needs to bring a root up (lsblk, blkid, findmnt, dmesg, losetup,
    # wipefs, blockdev, mount, lvm, mdadm, dmsetup and systemd's own tools stay).
    *(f"usr/bin/{b}" for b in (
        "choom", "chrt", "taskset", "uclampset", "ionice", "hardlink", "lsmem", "wdctl", "ipcs",
        "ipcrm", "ipcmk", "lslocks", "lsipc", "lsns", "nsenter", "unshare", "setpriv", "more",
        "rev", "namei", "whereis", "mcookie", "prlimit", "fallocate", "rename.ul", "setarch",
        "i386", "linux32", "linux64", "x86_64", "chattr", "lsattr", "clear_console", "bashbug",
        "savelog", "tempfile", "ischroot", "systemd-analyze", "kernel-install",
        "systemd-firstboot", "systemd-cryptenroll", "hostnamectl", "systemd-machine-id-setup",
        "systemd-delta", "systemd-path", "systemd-socket-activate", "systemd-stdio-bridge",
        "systemd-hwdb", "systemd-ac-power")),
    # kbd and console-data: loadkeys and the PC keymaps load the console keymap; fonts,
    # screen maps and the other keyboard tools serve the running system's consoles.
    "usr/share/consolefonts/*", "usr/share/consoletrans/*", "usr/share/keymaps/amiga/*",
    "usr/share/keymaps/atari/*", "usr/share/keymaps/mac/*", "usr/share/keymaps/sun/*",
    "usr/share/console/*", "usr/sbin/kbdrate",
    *(f"usr/bin/{b}" for b in (
        "chvt", "codepage", "deallocvt", "dumpkeys", "fgconsole", "getkeycodes", "kbd_mode",
        "kbdinfo", "loadunimap", "mapscrn", "mk_modmap", "openvt", "psfaddtable", "psfgettable",
        "psfstriptable", "psfxtable", "resizecons", "screendump", "setfont", "setkeycodes",
        "setleds", "setlogcons", "setmetamode", "setvtrgb", "showconsolefont", "showkey",
        "splitfont", "unicode_start", "unicode_stop")),
    *(f"usr/sbin/{b}" for b in (
        "rtcwake", "chmem", "runuser", "fstrim", "blkzone", "blkdiscard", "agetty", "ldattach",
        "readprofile", "ctrlaltdel", "fsfreeze", "chcpu", "pivot_root", "swapoff", "swapon")),
)


@dataclass
class Pruner:
    """Matches paths against glob patterns and keeps the tally of what it dropped."""

    patterns: tuple[str, ...] = DEFAULT_PRUNE
    keep: tuple[str, ...] = ()
    dropped: dict[str, list[int]] = field(default_factory=dict)  # pattern -> [files, bytes]
    # path -> (pattern, package): what `rdforge explain` answers for a path not in the image
    paths: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._re = [(p, re.compile(fnmatch.translate(p))) for p in self.patterns]
        self._keep = re.compile("|".join(fnmatch.translate(p) for p in self.keep)) if self.keep else None

    def match(self, path: str) -> str | None:
        """The pattern that drops path, or None."""
        if self._keep and self._keep.match(path):
            return None
        for pat, rx in self._re:
            if rx.match(path):
                return pat
        return None

    def tally(self, pattern: str, size: int, path: str = "", package: str = "") -> None:
        t = self.dropped.setdefault(pattern, [0, 0])
        t[0] += 1
        t[1] += size
        if path:
            self.paths.setdefault(path, (pattern, package))


def gc_libraries(tree: Tree, libdirs: tuple[str, ...], keep_sonames: set[str]) -> list[str]:
    """Remove shared libraries directly in the library directories that nothing needs: not
    a DT_NEEDED of any other ELF file (transitively), nor a kept dlopen soname. Plugins in
    subdirectories (cryptsetup, ossl-modules, systemd) are roots, as are NSS modules."""
    from rdforge.formats.elf import is_elf, read_elf

    real_dirs = {tree.resolve(d) for d in libdirs}

    def is_lib(path: str) -> bool:
        d, _, name = path.rpartition("/")
        return d in real_dirs and ".so" in name and not name.startswith(("libnss_", "ld-linux"))

    by_name: dict[str, list[str]] = {}
    for p in tree.entries:
        if is_lib(p):
            by_name.setdefault(p.rpartition("/")[2], []).append(p)
    needed: dict[str, list[str]] = {}
    roots: list[str] = []
    for p, e in tree.entries.items():
        if e.kind == FILE and is_elf(e.data):
            needed[p] = read_elf(e.data).needed
            if not is_lib(p):
                roots.append(p)
    live: set[str] = set()
    todo = list(roots)
    for s in keep_sonames:
        todo += by_name.get(s, [])
    while todo:
        p = todo.pop()
        real = tree.resolve(p)
        if p in live and real in live:
            continue
        live.add(p)
        live.add(real)
        for n in needed.get(real, []):
            todo += by_name.get(n, [])
    dead = sorted(p for p in tree.entries if is_lib(p) and p not in live
                  and tree.resolve(p) not in live)
    for p in dead:
        tree.entries.pop(p, None)
    return dead
