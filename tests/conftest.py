"""Shared fixtures: the real trixie archive (cached) and one default build per session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdforge.config import Config

# The tests build with rdforge's own defaults, whatever /usr/lib/rdforge or /etc/rdforge hold
# on the machine running them (tests of the layering name their own directories).
os.environ["RDFORGE_CONFIG_DIRS"] = ""
# One test worker per core, each running a VM under emulation: with one virtual CPU each the
# boots are about 10% faster than with two (measured on 2 cores: 8 layout boots, 2 workers,
# 133-140 s against 151-153 s).
if (os.cpu_count() or 1) <= 2:
    os.environ.setdefault("RDFORGE_VM_CPUS", "1")


@pytest.fixture(scope="session")
def trixie_packages() -> list:  # type: ignore[type-arg]
    from rdforge.sources.plan import load_universe

    src = load_universe(Config())
    assert src.archive is not None
    return src.archive.packages()


@pytest.fixture(scope="session", autouse=True)
def _stop_gpg_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """gpg (for the test keys) and dnf (for a repository's key) start a gpg-agent per
    home directory, which outlives the test: stopped when the session ends."""
    yield
    base = tmp_path_factory.getbasetemp()
    subprocess.run(["pkill", "-f", f"gpg-agent --homedir {base}"], capture_output=True)


@pytest.fixture(scope="session")
def default_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default initrd, built once per test session (package downloads are cached)."""
    from rdforge.outputs.initrd import build

    d = tmp_path_factory.mktemp("default")
    build(Config(output=str(d / "initrd.img"), lock=str(d / "rdforge.lock")))
    return d / "initrd.img"


def rpm_config(out: Path, **kw: object) -> Config:
    """The fedora profile's configuration for the test rpm distribution (tests/rpmdist.py)."""
    from rpmdist import make_distribution

    from rdforge.config import load

    repo = make_distribution()
    return load(None, {"distribution": "fedora", "mirror": f"file://{repo}",
                       "keyring": str(repo / "key.gpg"), "output": str(out / "initrd.img"),
                       "lock": str(out / "rdforge.lock"), **kw}, layered=False)


@pytest.fixture(scope="session")
def rpm_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fedora profile's default initrd, built from the test rpm distribution."""
    from rdforge.outputs.initrd import build

    d = tmp_path_factory.mktemp("rpm")
    build(rpm_config(d))
    return d / "initrd.img"


@pytest.fixture(scope="session")
def microcode_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default initrd with every vendor's early microcode before it (--microcode all)."""
    from rdforge.outputs.initrd import build

    d = tmp_path_factory.mktemp("microcode")
    build(Config(output=str(d / "initrd.img"), lock=str(d / "rdforge.lock"), microcode="all"))
    return d / "initrd.img"


@pytest.fixture(scope="session")
def vendor_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A vendor signing key and certificate (rdforge genkey)."""
    from rdforge.keys import genkey

    return genkey("rdforge test vendor", tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def trusted_build(tmp_path_factory: pytest.TempPathFactory, vendor_keys: tuple[Path, Path]) -> Path:
    """The default initrd trusting the vendor certificate for system extensions."""
    from rdforge.outputs.initrd import build

    d = tmp_path_factory.mktemp("trusted")
    build(Config(output=str(d / "initrd.img"), lock=str(d / "rdforge.lock"),
                 trust=[str(vendor_keys[1])]))
    return d / "initrd.img"


def install_kernel(default_build: Path, root: Path) -> tuple[Path, str]:
    """The default build's kernel as dpkg installs it under root: usr/lib/modules/KVER and
    boot/vmlinuz-KVER, copied from the cache's extraction of its package."""
    import json
    import shutil

    from rdforge.sources.cache import cache_root

    m = json.loads(default_build.with_name("initrd.img.manifest.json").read_text())
    kver = m["kernel_version"]
    kcache = cache_root() / "kernels" / m["kernel_package"]["sha256"]
    moddir = root / "usr/lib/modules" / kver
    shutil.copytree(kcache / "modules", moddir, copy_function=shutil.copyfile)
    (root / "boot").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kcache / "vmlinuz", root / f"boot/vmlinuz-{kver}")
    return moddir, kver


CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # as in a build chroot: Debian's python3


def source_checkout(dest: Path) -> Path:
    """The project's files as its source package has them (what git tracks, minus tests)."""
    root = Path(__file__).resolve().parent.parent
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.split()
    import shutil

    for f in files:
        src = root / f
        if src.is_file() and not f.startswith("tests/"):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def build_debs(src: Path, *wrap: str, **env: str) -> dict[str, Path]:
    """dpkg-buildpackage -us -uc -b in src, with Debian's python3; the .debs by name."""
    e = {**{k: v for k, v in os.environ.items() if not k.startswith(("PYENV", "VIRTUAL_ENV"))},
         "PATH": CLEAN_PATH, **env}
    r = subprocess.run([*wrap, "dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=e,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return {p.name: p for p in sorted(src.parent.glob("*.deb"))}


@pytest.fixture(scope="session")
def rdforge_debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """rdforge's own Debian packages, built from this checkout."""
    import shutil

    if not shutil.which("dpkg-buildpackage", path=CLEAN_PATH):
        pytest.skip("dpkg-dev is not installed")
    return build_debs(source_checkout(tmp_path_factory.mktemp("debs") / "rdforge"))


class TrixieTools:
    """Programs from trixie's own packages, unpacked with dpkg-deb and run on this host through
    trixie's dynamic loader: the reference tools of the systemd version the initrd carries."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        libs = f"{self.root}/usr/lib/x86_64-linux-gnu"
        return subprocess.run([f"{self.root}/usr/lib64/ld-linux-x86-64.so.2", "--library-path",
                               f"{libs}:{libs}/systemd", f"{self.root}/{program}", *args],
                              capture_output=True, text=True)


    def wrappers(self, dest: Path, *programs: str) -> Path:
        """A directory of scripts running these programs this way, for tools that look for
        them by name (ukify's --tools)."""
        dest.mkdir(parents=True, exist_ok=True)
        libs = f"{self.root}/usr/lib/x86_64-linux-gnu"
        for program in programs:
            w = dest / Path(program).name
            w.write_text(f'#!/bin/sh\nexec {self.root}/usr/lib64/ld-linux-x86-64.so.2 '
                         f'--library-path {libs}:{libs}/systemd {self.root}/{program} "$@"\n')
            w.chmod(0o755)
        return dest


@pytest.fixture(scope="session")
def trixie_systemd(tmp_path_factory: pytest.TempPathFactory) -> TrixieTools:
    """trixie's systemd-dissect, systemd-measure and systemd-keyutil (systemd 257) with the
    libraries they load."""
    from rdforge.sources.fetch import fetch_all
    from rdforge.sources.plan import load_universe, resolve_set

    cfg = Config()
    pkgs = resolve_set(load_universe(cfg).universe, cfg,
                       ["systemd-container", "systemd-repart", "libcryptsetup12", "libblkid1",
                        "libmount1"])
    root = tmp_path_factory.mktemp("trixie-systemd")
    for deb in fetch_all(pkgs, False):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return TrixieTools(root)


def initrd_unit_credentials(dest: Path, unit: str, text: str) -> tuple[Path, Path]:
    """Credentials that make systemd 257 in the initrd run a unit: systemd.extra-unit.UNIT
    installs it, a systemd.unit-dropin.initrd.target~ drop-in makes initrd.target want it."""
    from rdforge.formats import creds

    made = []
    for name, body in ((f"systemd.extra-unit.{unit}", text.encode()),
                       (f"systemd.unit-dropin.initrd.target~{unit.split('.')[0]}",
                        f"[Unit]\nWants={unit}\n".encode())):
        path = dest / f"{name}.cred"
        path.write_bytes(creds.armor(creds.encrypt(name, body)))
        made.append(path)
    return made[0], made[1]


def seal_to_swtpm(state: Path, name: str, value: str, out: Path,
                  *args: str) -> subprocess.CompletedProcess[str]:
    """`rdforge credential NAME --encrypt tpm2` on the swtpm keeping its state in `state`
    (started as a server for the sealing, the way a host tool reaches a TPM)."""
    import sys
    import tempfile

    from rdforge.vm.boot import start_swtpm

    with tempfile.TemporaryDirectory(prefix="rdforge-swtpm-") as tmp:
        sock = Path(tmp, "tpm.sock")
        tpm = start_swtpm(state, sock, server=True)
        try:
            return subprocess.run(
                [sys.executable, "-m", "rdforge.cli", "credential", name, "--value", value,
                 "--encrypt", "tpm2", "--tpm2-device", f"swtpm:path={sock}", *args, "-o", str(out)],
                capture_output=True, text=True)
        finally:
            tpm.terminate()
            tpm.wait(timeout=10)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Boot tests are slow: give each its own xdist group so they spread over workers.
    for item in items:
        if "boot" in item.keywords and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid))


os.environ.setdefault("RDFORGE_TEST", "1")
