"""Additions handed to an initrd the way systemd-stub hands them over: a further, uncompressed
cpio archive appended to the initrd, unpacked by the kernel over the first one, holding
/.extra/sysext/*.raw (system extensions) and /.extra/credentials/*.cred (credentials).

Credentials go in the form their consumer in the initrd reads (creds.for_initrd): base64
for the service manager, binary for systemd's generators (systemd.extra-unit.*, ...)."""

from __future__ import annotations

import io
import stat
from collections.abc import Sequence
from pathlib import Path

from rdforge.errors import RdforgeError
from rdforge.formats import cpio, creds


def extra_cpio(sysexts: Sequence[Path] = (), credentials: Sequence[Path] = ()) -> bytes:
    entries = [cpio.CpioEntry(".extra", stat.S_IFDIR | 0o555)]
    for folder, files, mode in (("sysext", sysexts, 0o444), ("credentials", credentials, 0o400)):
        if not files:
            continue
        entries.append(cpio.CpioEntry(f".extra/{folder}", stat.S_IFDIR | 0o555))
        seen: set[str] = set()
        for f in files:
            if folder == "credentials" and not f.name.endswith(".cred"):
                raise RdforgeError(f"{f}: credential files are named NAME.cred (NAME as given "
                                   "to rdforge credential)")
            if f.name in seen:
                raise RdforgeError(f"two {folder} files named {f.name}")
            seen.add(f.name)
            try:
                data = f.read_bytes()
            except OSError as e:
                raise RdforgeError(f"{f}: {e.strerror}") from None
            if folder == "credentials":
                data = creds.for_initrd(f.name.removesuffix(".cred"), data)
            entries.append(cpio.CpioEntry(f".extra/{folder}/{f.name}", stat.S_IFREG | mode,
                                          data=data))
    out = io.BytesIO()
    cpio.write(out, entries)
    return out.getvalue()


def append_extra(initrd: bytes, extra: bytes) -> bytes:
    """The initrd followed by the extra archive (on a 4-byte boundary, as the kernel expects)."""
    return initrd + b"\0" * (-len(initrd) % 4) + extra
