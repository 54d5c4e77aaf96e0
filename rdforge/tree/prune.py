"""What an initrd never uses: documentation, man pages, locales, headers, static libraries, ..."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

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
    "usr/lib/systemd/tests/*", "usr/lib/*/security/pam_userdb.so",
)


@dataclass
class Pruner:
    """Matches paths against glob patterns and keeps the tally of what it dropped."""

    patterns: tuple[str, ...] = DEFAULT_PRUNE
    keep: tuple[str, ...] = ()
    dropped: dict[str, list[int]] = field(default_factory=dict)  # pattern -> [files, bytes]

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

    def tally(self, pattern: str, size: int) -> None:
        t = self.dropped.setdefault(pattern, [0, 0])
        t[0] += 1
        t[1] += size
