"""`rdforge debian-package`: the source package of a vendor initrd.

It builds a binary package `linux-initrd-KVER` that carries the initrd for one kernel ABI at
/usr/lib/modules/KVER/initrd (where kernel-install plugins, dracut's and rdforge's, take a
vendor initrd instead of building one) with its manifest, and optionally an unsigned UKI at
/usr/lib/modules/KVER/uki.efi (signed later, the way Debian's signing service and template
packages sign the kernel). The build runs offline in the build chroot: every package the
lock pins is a Build-Depends at its exact version, and rdforge builds from what apt
installed there (`--installed-root /`), checked against the lock.
"""

from __future__ import annotations

import email.utils
import shutil
from pathlib import Path

from rdforge.errors import RdforgeError
from rdforge.fsutil import write_atomic
from rdforge.sources import lock as lockfile

RULES = """#!/usr/bin/make -f
# The initrd (and UKI) from the packages apt installed as Build-Depends, pinned by
# debian/rdforge.lock; no network, no cache.
KVER = {kver}

%:
\tdh $@

# Without SOURCE_DATE_EPOCH (dpkg sets it from the changelog) the image's times are its
# packages' newest, as in any rdforge build: the same bytes as the vendor's own build.
override_dh_auto_build:
\tenv -u SOURCE_DATE_EPOCH rdforge build -c debian/rdforge.toml --lock debian/rdforge.lock \\
\t\t--locked --offline --installed-root / -o debian/build/initrd.img -q
{uki_build}
override_dh_auto_install:
\tinstall -D -m 0644 debian/build/initrd.img debian/{binary}/usr/lib/modules/$(KVER)/initrd
\tinstall -D -m 0644 debian/build/initrd.img.manifest.json \\
\t\tdebian/{binary}/usr/lib/modules/$(KVER)/initrd.manifest.json
{uki_install}
override_dh_auto_clean:
\trm -rf debian/build

# the image is compressed already; its bytes are what was built
override_dh_strip_nondeterminism override_dh_compress:
"""

UKI_BUILD = """\trdforge uki --initrd debian/build/initrd.img --kernel /boot/vmlinuz-$(KVER) \\
\t\t--stub /usr/lib/systemd/boot/efi/linuxx64.efi.stub --cmdline '{cmdline}' \\
\t\t-o debian/build/uki.efi
"""
UKI_INSTALL = ("\tinstall -D -m 0644 debian/build/uki.efi "
               "debian/{binary}/usr/lib/modules/$(KVER)/uki.efi\n")


def write_source_package(config: Path, lock: Path, out: Path, version: str, maintainer: str,
                         date: int, uki_cmdline: str | None) -> dict[str, object]:
    """The source package directory; returns what it holds."""
    lk = lockfile.read(lock)
    if lk.kernel is None:
        raise RdforgeError(f"{lock}: pins no kernel (build without --modules-dir or "
                           "--modules none to pin one)")
    kver = lk.kernel.name.removeprefix("linux-image-")
    binary = f"linux-initrd-{kver}"
    if out.exists() and any(out.iterdir()):
        raise RdforgeError(f"{out}: exists and is not empty")
    deb = out / "debian"
    (deb / "source").mkdir(parents=True, exist_ok=True)
    pins = {p.name: p.version for p in [*lk.packages, *lk.firmware, *lk.microcode, lk.kernel]}
    build_deps = ["debhelper-compat (= 13)", "rdforge"]
    if uki_cmdline is not None:
        build_deps.append("systemd-boot-efi")  # the stub (the lock does not pin it yet)
    build_deps += [f"{n} (= {v})" for n, v in sorted(pins.items())]
    control = (f"Source: rdforge-initrd-{kver}\nSection: kernel\nPriority: optional\n"
               f"Maintainer: {maintainer}\nBuild-Depends: " + ",\n ".join(build_deps) + "\n"
               "Rules-Requires-Root: no\nStandards-Version: 4.6.2\n\n"
               f"Package: {binary}\nArchitecture: {lk.arch}\n"
               f"Depends: ${{misc:Depends}}, {lk.kernel.name}\n"
               f"Description: vendor initrd for Linux {kver}, built by rdforge\n"
               f" The initrd for kernel {kver} at /usr/lib/modules/{kver}/initrd, built\n"
               " reproducibly from the distribution's packages with rdforge; kernel-install\n"
               " plugins use it instead of building one on the machine.\n")
    write_atomic(deb / "control", control.encode())
    rules = RULES.format(kver=kver, binary=binary,
                         uki_build=UKI_BUILD.format(cmdline=uki_cmdline) if uki_cmdline is not None else "",
                         uki_install=UKI_INSTALL.format(binary=binary) if uki_cmdline is not None else "")
    write_atomic(deb / "rules", rules.encode(), mode=0o755)
    stamp = email.utils.formatdate(date, usegmt=True).replace("GMT", "+0000")
    changelog = (f"rdforge-initrd-{kver} ({version}) unstable; urgency=medium\n\n"
                 f"  * The initrd for {kver}, from the packages debian/rdforge.lock pins.\n\n"
                 f" -- {maintainer}  {stamp}\n")
    write_atomic(deb / "changelog", changelog.encode())
    write_atomic(deb / "source/format", b"3.0 (native)\n")
    write_atomic(deb / "copyright", (
        b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        b"Files: *\nCopyright: the authors of the packages debian/rdforge.lock pins\n"
        b"License: various\n Each file in the initrd carries the license of the package it "
        b"comes from;\n see /usr/share/doc/PACKAGE/copyright of each.\n"))
    shutil.copyfile(config, deb / "rdforge.toml")
    shutil.copyfile(lock, deb / "rdforge.lock")
    return {"output": str(out), "source": f"rdforge-initrd-{kver}", "binary": binary,
            "version": version, "build_depends": len(build_deps), "uki": uki_cmdline is not None}
