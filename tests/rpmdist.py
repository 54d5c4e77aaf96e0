"""A test rpm distribution made from real binaries: Fedora's repositories cannot be reached
from the build machines, so trixie's packages of the default image (and its kernel) are
repackaged as rpms by rpmbuild, named as Fedora names them where that is clear, signed by
rpmsign and indexed by createrepo_c, with repomd.xml signed by the same test key.

rpmbuild's automatic dependency generator writes the soname Requires and Provides from the
ELF files (`libc.so.6()(64bit)`), and the interpreter Requires of scripts (`/usr/bin/sh`), as it
does for Fedora's packages; the Debian dependencies are not carried over. rpmbuild's own
post-install steps (stripping, byte-compiling, mangling shebangs) are off: the files are
trixie's, byte for byte. The kernel becomes kernel-core, with its image where Fedora's is,
/usr/lib/modules/KVER/vmlinuz.

The result is cached by its inputs (this file, the .debs' checksums) under
cache_root()/rpmdist/KEY; the key it is signed with is made once and kept beside it.
`python3 tests/rpmdist.py` makes it and prints its directory."""

from __future__ import annotations

import concurrent.futures
import fcntl
import functools
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rpmtools import SigningKey, make_key, make_repo, sign_rpm  # noqa: E402

from rdforge.formats.deb import DebFile  # noqa: E402
from rdforge.sources.archive import Package  # noqa: E402
from rdforge.sources.cache import cache_root  # noqa: E402

# Debian name -> Fedora name, where Fedora's is clear. The rest keep their Debian names.
FEDORA_NAMES = {
    "libc6": "glibc", "udev": "systemd-udev", "libsystemd-shared": "systemd-shared",
    "libsystemd0": "systemd-libs", "libudev1": "systemd-libs-udev", "kmod": "kmod",
    "libkmod2": "kmod-libs", "util-linux": "util-linux-core", "mount": "util-linux-mount",
    "libmount1": "libmount", "libblkid1": "libblkid", "libuuid1": "libuuid",
    "libsmartcols1": "libsmartcols", "libselinux1": "libselinux", "libpcre2-8-0": "pcre2",
    "zlib1g": "zlib-ng-compat", "liblzma5": "xz-libs", "libzstd1": "libzstd",
    "libcrypt1": "libxcrypt", "libcap2": "libcap", "libcap-ng0": "libcap-ng",
    "libssl3t64": "openssl-libs", "libacl1": "libacl", "libtinfo6": "ncurses-libs",
    "libaudit1": "audit-libs", "libpam0g": "pam-libs", "libseccomp2": "libseccomp",
    "libcryptsetup12": "cryptsetup-libs", "dmsetup": "device-mapper",
    "libdevmapper1.02.1": "device-mapper-libs", "libdevmapper-event1.02.1":
    "device-mapper-event-libs", "dmeventd": "device-mapper-event", "libgcc-s1": "libgcc",
    "libjson-c5": "json-c", "libsqlite3-0": "sqlite-libs", "libaio1t64": "libaio",
    "libedit2": "libedit", "libbsd0": "libbsd", "libmd0": "libmd", "libapparmor1": "libapparmor",
    "e2fsprogs": "e2fsprogs", "libext2fs2t64": "e2fsprogs-libs", "libcom-err2": "libcom_err",
    "libss2": "libss", "kbd": "kbd", "console-data": "kbd-misc", "mawk": "mawk",
    "base-files": "fedora-release-common", "libdb5.3t64": "libdb",
}
# What Fedora's spec files declare beyond the generated dependencies: glibc's dynamic loader
# feature, and bash as /bin/sh (Debian's /bin is a symlink, which rpm's file dependencies
# do not follow).
EXTRA_PROVIDES = {"libc6": ("rtld(GNU_HASH)",), "bash": ("/bin/sh", "/bin/bash", "/usr/bin/sh")}
KERNEL = "kernel-core"
PAYLOAD = "w3.zstdio"  # fast zstd: the kernel's modules are 100 MB
RPMBUILD_DEFINES = {
    "__spec_install_post": "%{nil}", "debug_package": "%{nil}", "_build_id_links": "none",
    "_buildhost": "rdforge-test", "use_source_date_epoch_as_buildtime": "1",
    "clamp_mtime_to_source_epoch": "1", "_binary_payload": PAYLOAD,
}
SOURCE_DATE_EPOCH = "1735689600"


@dataclass(frozen=True)
class RpmName:
    name: str
    epoch: str
    version: str
    release: str
    arch: str


def rpm_name(p: Package, kernel: bool = False) -> RpmName:
    """Debian's epoch:upstream-revision as rpm's Epoch, Version and Release (a dash in the
    upstream version, which rpm forbids there, becomes an underscore)."""
    epoch, _, rest = p.version.rpartition(":") if ":" in p.version else ("", "", p.version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "1")
    name = KERNEL if kernel else FEDORA_NAMES.get(p.name, p.name)
    arch = "noarch" if p.arch == "all" else "x86_64"
    return RpmName(name, epoch, upstream.replace("-", "_"), revision.replace("-", "_"), arch)


def _files_line(path: str, mode: int, user: str, group: str) -> str:
    quoted = '"' + path.replace("%", "?") + '"'  # a '%' is matched as a glob (rpm expands %%)
    if stat.S_ISLNK(mode):
        return quoted
    perms = f"{stat.S_IMODE(mode):04o}"
    kind = "%dir " if stat.S_ISDIR(mode) else ""
    return f"{kind}%attr({perms},{user or 'root'},{group or 'root'}) {quoted}"


def _unpack(deb: Path, root: Path, kernel: bool) -> list[str]:
    """The .deb's files under root; returns their %files lines."""
    lines, kver = [], ""
    with DebFile(deb) as d:
        members = list(d.data())
    for ti, data in members:
        rel = ti.name.lstrip("./").rstrip("/")
        if not rel:
            continue
        if kernel and rel.startswith("boot/vmlinuz-"):
            kver = rel.removeprefix("boot/vmlinuz-")
            rel = f"usr/lib/modules/{kver}/vmlinuz"
        elif kernel and rel.startswith("boot/"):
            continue  # System.map and config: Fedora keeps them in the modules directory too
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if ti.isdir():
            dest.mkdir(exist_ok=True)
            mode = stat.S_IFDIR | ti.mode
        elif ti.issym():
            os.symlink(ti.linkname, dest)
            mode = stat.S_IFLNK | 0o777
        elif ti.islnk():
            os.link(root / ti.linkname.lstrip("./"), dest)
            mode = stat.S_IFREG | ti.mode
        elif ti.isreg():
            dest.write_bytes(data or b"")
            dest.chmod(stat.S_IMODE(ti.mode))  # rpm's generators look at executables only
            mode = stat.S_IFREG | ti.mode
        else:
            raise RuntimeError(f"{deb}: {rel} is neither file, directory nor link")
        lines.append(_files_line("/" + rel, mode, ti.uname, ti.gname))
    return lines


def _spec(n: RpmName, source: str, files: list[str], root: Path) -> str:
    epoch = f"Epoch: {n.epoch}\n" if n.epoch else ""
    extra = ("kernel = %{version}-%{release}",) if n.name == KERNEL else EXTRA_PROVIDES.get(source, ())
    provides = "".join(f"Provides: {x}\n" for x in extra)
    return (f"Name: {n.name}\nVersion: {n.version}\nRelease: {n.release}\n{epoch}"
            f"Summary: trixie's {source}, repackaged for rdforge's tests\nLicense: see /usr/share/doc\n"
            f"BuildArch: {n.arch}\n{provides}AutoReqProv: yes\n"
            f"%description\nThe files of Debian trixie's package {source}, unchanged.\n"
            f"%install\ncp -a {root}/. %{{buildroot}}/\n%files\n" + "\n".join(files) + "\n")


def build_one(deb: Path, p: Package, kernel: bool, work: Path, key: SigningKey) -> Path:
    n = rpm_name(p, kernel)
    top = work / p.name
    root = top / "src"
    root.mkdir(parents=True)
    files = _unpack(deb, root, kernel)
    (top / "pkg.spec").write_text(_spec(n, p.name, files, root))
    defines = [x for k, v in RPMBUILD_DEFINES.items() for x in ("--define", f"{k} {v}")]
    r = subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", *defines,
                        str(top / "pkg.spec")], capture_output=True, text=True,
                       env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
    if r.returncode != 0:
        raise RuntimeError(f"rpmbuild {p.name}: {r.stderr.strip()[-2000:]}")
    (rpm,) = (top / "RPMS").glob("*/*.rpm")
    shutil.rmtree(root)
    return sign_rpm(rpm, key)


@functools.cache
def debian_set() -> tuple[list[tuple[Package, Path]], tuple[Package, Path]]:
    """The default image's packages (the dlopen()ed libraries included) and kernel, from the
    lock of a default build from trixie (once per process)."""
    from rdforge.config import Config
    from rdforge.outputs.initrd import build
    from rdforge.sources import lock
    from rdforge.sources.fetch import fetch_all

    with tempfile.TemporaryDirectory(prefix="rdforge-rpmdist-") as tmp:
        build(Config(output=f"{tmp}/initrd.img", lock=f"{tmp}/initrd.lock"))
        lk = lock.read(Path(tmp, "initrd.lock"))
    assert lk.kernel is not None
    paths = fetch_all([*lk.packages, lk.kernel], offline=False)
    return list(zip(lk.packages, paths[:-1], strict=True)), (lk.kernel, paths[-1])


@functools.cache
def make_distribution() -> Path:
    """The signed repository's directory (repodata/, Packages/, key.gpg, key.asc)."""
    pkgs, kernel = debian_set()
    h = hashlib.sha256(Path(__file__).read_bytes())
    for p, _ in [*pkgs, kernel]:
        h.update(p.sha256.encode())
    base = cache_root() / "rpmdist"
    out = base / h.hexdigest()[:16]
    if (out / "repodata" / "repomd.xml.asc").exists():
        return out
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if (out / "repodata" / "repomd.xml.asc").exists():
            return out
        key_home = base / "gnupg"
        if not (key_home / "key.gpg").exists():
            shutil.rmtree(key_home, ignore_errors=True)
            make_key(key_home)
        key = SigningKey({**os.environ, "GNUPGHOME": str(key_home)}, key_home / "key.gpg",
                         key_home / "key.asc")
        with tempfile.TemporaryDirectory(prefix=".rpmdist-", dir=base) as tmp:
            work, repo = Path(tmp, "work"), Path(tmp, "repo")
            (repo / "Packages").mkdir(parents=True)
            jobs = [(p, deb, False) for p, deb in pkgs] + [(kernel[0], kernel[1], True)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
                for rpm in ex.map(lambda j: build_one(j[1], j[0], j[2], work, key), jobs):
                    os.replace(rpm, repo / "Packages" / rpm.name)
            make_repo(repo, key)
            subprocess.run(["gpgconf", "--homedir", str(key_home), "--kill", "gpg-agent"],
                           capture_output=True)  # the signing is done: no agent left behind
            for f in ("key.gpg", "key.asc"):
                shutil.copyfile(key_home / f, repo / f)
            os.replace(repo, out)
    return out


if __name__ == "__main__":
    print(make_distribution())
