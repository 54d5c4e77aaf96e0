"""rdforge on a trixie system: its .debs installed with dpkg, a kernel package whose
postinst runs rdforge's hook, and trixie's kernel-install with rdforge as initrd and UKI
generator (the reference: systemd 257's kernel-install and its own plugins)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rdforge.sources.cache import BlobCache, cache_root
from rdforge.vm.trixie import run_in, system_tarball, unpack_system

# one worker for the module: its chroots (module fixtures) are then made once, not per worker
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("installed-system")]
# a package build's chroot: debhelper, and what rdforge's own package depends on
BUILD_TOOLS = ["linux-base", "kmod", "build-essential", "debhelper", "faketime", "python3-zstandard",
               "python3-cryptography", "python3-lz4", "gpgv", "systemd-boot-efi"]
PACKAGES = ["systemd", "python3", "python3-zstandard", "python3-cryptography", "python3-lz4",
            "gpgv", "debian-archive-keyring", "kmod", "linux-base"]


@pytest.fixture(scope="module")
def system(default_build: Path, rdforge_debs: dict[str, Path],
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A trixie root with rdforge and rdforge-initramfs installed by dpkg, then the default
    build's kernel package installed by dpkg (whose postinst runs the kernel hooks)."""
    if shutil.which("mmdebstrap") is None or subprocess.run(["unshare", "-m", "true"]).returncode:
        pytest.skip("needs mmdebstrap and mount namespaces")
    root = unpack_system(system_tarball(PACKAGES), tmp_path_factory.mktemp("trixie") / "root")
    m = json.loads(default_build.with_name("initrd.img.manifest.json").read_text())
    kernel = m["kernel_package"]
    hit = BlobCache().lookup(kernel["sha256"], None, verify=False)
    assert hit is not None
    shutil.copyfile(hit, root / "tmp/linux-image.deb")
    for name, p in rdforge_debs.items():
        shutil.copyfile(p, root / "tmp" / name)
    r = run_in(root, "dpkg -i /tmp/rdforge_0.1.0_all.deb /tmp/rdforge-initramfs_0.1.0_all.deb\n"
               "dpkg -i /tmp/linux-image.deb\n", binds={"/root/.cache/rdforge": cache_root()})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root, str(m["kernel_version"])


def test_installing_a_kernel_package_runs_the_hook_and_gives_the_hosts_bytes(
        system: tuple[Path, str], default_build: Path) -> None:
    """The kernel package's postinst ran /etc/kernel/postinst.d/rdforge; the initrd it made
    there (trixie's python3 and zstandard, the installed kernel's modules) is the image this
    bookworm host built from the kernel package."""
    root, kver = system
    img = root / f"boot/initrd.img-{kver}"
    assert img.read_bytes() == default_build.read_bytes()
    assert (root / f"var/lib/rdforge/initrd.img-{kver}.lock").is_file()


def test_an_upgrade_of_systemd_remakes_the_initrd_through_dpkg_s_trigger(
        system: tuple[Path, str], default_build: Path) -> None:
    """rdforge-initramfs' file trigger on /usr/lib/systemd/systemd: dpkg installing the
    systemd package (the lock's version, as an upgrade would bring it) runs
    `rdforge update -k all`, which remakes the stale initrd."""
    from rdforge.sources import lock as lockfile

    root, kver = system
    img = root / f"boot/initrd.img-{kver}"
    img.write_bytes(b"stale")
    systemd = next(p for p in lockfile.read(default_build.with_name("rdforge.lock")).packages
                   if p.name == "systemd")
    hit = BlobCache().lookup(systemd.sha256, systemd.size, verify=False)
    assert hit is not None
    shutil.copyfile(hit, root / "tmp/systemd.deb")
    r = run_in(root, "dpkg-query -W -f '${Version}\\n' systemd\ndpkg -i /tmp/systemd.deb\n"
               "rm /tmp/systemd.deb\n", binds={"/root/.cache/rdforge": cache_root()})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.splitlines()[0] == systemd.version  # a reinstall: no other package moves
    assert "Processing triggers for rdforge-initramfs" in r.stdout
    assert f"rdforge: {kver}: built /boot/initrd.img-{kver}" in r.stderr
    assert img.read_bytes() == default_build.read_bytes()


def _kernel_install(root: Path, kver: str, conf: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    script = (f"printf '{conf}' > /etc/kernel/install.conf\n{extra}\n"
              "export SYSTEMD_RELAX_ESP_CHECKS=1 SYSTEMD_RELAX_XBOOTLDR_CHECKS=1\n"
              f"kernel-install --esp-path=/efi --entry-token=literal:rdforge "
              f"--make-entry-directory=yes -v add {kver} /boot/vmlinuz-{kver}\n"
              "rm -rf /tmp/esp && cp -a /efi /tmp/esp\n")
    return run_in(root, script, binds={"/root/.cache/rdforge": cache_root()})


def test_kernel_install_uki_layout_builds_and_signs_a_uki_with_extras(
        system: tuple[Path, str], default_build: Path, vendor_keys: tuple[Path, Path],
        tmp_path: Path) -> None:
    root, kver = system
    (root / "etc/rdforge/extra.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/rdforge/extra.d/rdforge.test.cred").write_text("a credential\n")
    shutil.copyfile(vendor_keys[0], root / "etc/kernel/db.key")
    shutil.copyfile(vendor_keys[1], root / "etc/kernel/db.crt")
    (root / "etc/kernel/uki.conf").write_text("[UKI]\nSecureBootPrivateKey=/etc/kernel/db.key\n"
                                              "SecureBootCertificate=/etc/kernel/db.crt\n")
    (root / "etc/kernel/cmdline").write_text("console=ttyS0 root=LABEL=rdforge-root rw\n")
    r = _kernel_install(root, kver, "layout=uki\\nuki_generator=rdforge\\n")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    uki = root / f"tmp/esp/EFI/Linux/rdforge-{kver}.efi"
    assert uki.is_file(), r.stderr[-2000:]
    assert (root / f"tmp/esp/EFI/Linux/rdforge-{kver}.efi.extra.d/rdforge.test.cred").is_file()
    v = subprocess.run(["sbverify", "--cert", str(vendor_keys[1]), str(uki)], capture_output=True,
                       text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    out = tmp_path / "initrd"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.initrd", str(uki), str(out)],
                   check=True)
    assert out.read_bytes().rstrip(b"\0") == default_build.read_bytes().rstrip(b"\0")
    cmd = tmp_path / "cmdline"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.cmdline", str(uki), str(cmd)],
                   check=True)
    assert cmd.read_bytes().rstrip(b"\0") == b"console=ttyS0 root=LABEL=rdforge-root rw"


def test_kernel_install_bls_layout_takes_rdforges_initrd(system: tuple[Path, str],
                                                         default_build: Path) -> None:
    root, kver = system
    (root / f"boot/initrd.img-{kver}").rename(root / f"boot/saved-{kver}")
    try:
        r = _kernel_install(root, kver, "layout=bls\\ninitrd_generator=rdforge\\n")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        entry = (root / f"tmp/esp/loader/entries/rdforge-{kver}.conf").read_text()
        initrds = [line.split()[1] for line in entry.splitlines() if line.startswith("initrd ")]
        assert initrds == [f"/rdforge/{kver}/initrd"], entry
        assert (root / f"tmp/esp/rdforge/{kver}/initrd").read_bytes() == default_build.read_bytes()
    finally:
        (root / f"boot/saved-{kver}").rename(root / f"boot/initrd.img-{kver}")


@pytest.fixture(scope="module")
def build_root(default_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package build's chroot: every package the default build's lock pins installed by
    apt (as Build-Depends would be), the kernel package by dpkg."""
    if shutil.which("mmdebstrap") is None or subprocess.run(["unshare", "-m", "true"]).returncode:
        pytest.skip("needs mmdebstrap and mount namespaces")
    return _make_build_root(default_build, tmp_path_factory.mktemp("buildroot") / "root")


def _make_build_root(default_build: Path, dest: Path) -> Path:
    from rdforge.sources import lock as lockfile

    lk = lockfile.read(default_build.with_name("rdforge.lock"))
    names = sorted({p.name for p in lk.packages})
    root = unpack_system(system_tarball([*names, *BUILD_TOOLS]), dest)
    assert lk.kernel is not None
    hit = BlobCache().lookup(lk.kernel.sha256, lk.kernel.size, verify=False)
    assert hit is not None
    shutil.copyfile(hit, root / "tmp/linux-image.deb")
    r = run_in(root, "dpkg -i --force-depends /tmp/linux-image.deb\nrm /tmp/linux-image.deb\n")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return root


def _locked_from(root: Path, lock: Path, out: Path) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "rdforge.cli", "build", "--locked", "--offline",
                           "--installed-root", str(root), "--lock", str(lock), "-o", str(out),
                           "-q"], capture_output=True, text=True)


def test_a_locked_build_from_the_build_roots_installed_packages_gives_the_same_bytes(
        build_root: Path, default_build: Path, tmp_path: Path) -> None:
    lock = default_build.with_name("rdforge.lock")
    r = _locked_from(build_root, lock, tmp_path / "initrd.img")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "initrd.img").read_bytes() == default_build.read_bytes()
    m = json.loads((tmp_path / "initrd.img.manifest.json").read_text())
    assert m["package_source"]["installed_root"] == str(build_root)


def test_a_file_changed_after_dpkg_installed_it_is_refused(build_root: Path, default_build: Path,
                                                           tmp_path: Path) -> None:
    target = build_root / "usr/lib/udev/rules.d/60-block.rules"
    saved = target.read_bytes()
    target.write_bytes(saved + b"# changed by someone\n")
    try:
        r = _locked_from(build_root, default_build.with_name("rdforge.lock"), tmp_path / "x.img")
    finally:
        target.write_bytes(saved)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "/usr/lib/udev/rules.d/60-block.rules differs from the package's" in r.stderr
    assert not (tmp_path / "x.img").exists()


def test_a_version_other_than_the_locked_one_is_refused(build_root: Path, default_build: Path,
                                                        tmp_path: Path) -> None:
    data = json.loads(default_build.with_name("rdforge.lock").read_text())
    bash = next(p for p in data["packages"] if p["name"] == "bash")
    bash["version"] = "1.0-1"
    lock = tmp_path / "other.lock"
    lock.write_text(json.dumps(data))
    r = _locked_from(build_root, lock, tmp_path / "x.img")
    assert r.returncode == 1 and "bash: " in r.stderr and "the lock pins 1.0-1" in r.stderr


def test_the_vendor_initrd_package_builds_reproducibly_in_the_build_root(
        build_root: Path, default_build: Path, rdforge_debs: dict[str, Path], tmp_path: Path) -> None:
    """rdforge debian-package writes the source package; dpkg-buildpackage builds it in the
    build chroot and again in a second chroot (another directory, another time zone, three
    days later under faketime): the same .deb, holding the default build's bytes at
    /usr/lib/modules/KVER/initrd and an unsigned UKI."""
    import sys

    cfg = tmp_path / "rdforge.toml"
    cfg.write_text("[build]\n")
    shutil.copyfile(default_build.with_name("rdforge.lock"), tmp_path / "rdforge.lock")
    src = build_root / "tmp/one/rdforge-initrd"
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "debian-package", "-c", str(cfg),
                        "--uki-cmdline", "root=LABEL=root rw", "-o", str(src)],
                       capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "1790000000"})
    assert r.returncode == 0, r.stderr
    other = _make_build_root(default_build, tmp_path / "second-chroot")
    shutil.copytree(src, other / "tmp/two/deeper/rdforge-initrd")
    for chroot in (build_root, other):
        shutil.copyfile(rdforge_debs["rdforge_0.1.0_all.deb"], chroot / "tmp/rdforge.deb")
    r = run_in(build_root, "dpkg -i /tmp/rdforge.deb\n"
               "cd /tmp/one/rdforge-initrd && dpkg-buildpackage -us -uc -b >/tmp/one.log 2>&1\n")
    log = (build_root / "tmp/one.log").read_text()[-3000:] if (build_root / "tmp/one.log").exists() else ""
    assert r.returncode == 0, r.stderr[-2000:] + log
    r = run_in(other, "dpkg -i /tmp/rdforge.deb\n"
               "cd /tmp/two/deeper/rdforge-initrd && TZ=Asia/Tokyo LC_ALL=C.UTF-8 "
               "faketime -f +3d dpkg-buildpackage -us -uc -b >/tmp/two.log 2>&1\n")
    log = (other / "tmp/two.log").read_text()[-3000:] if (other / "tmp/two.log").exists() else ""
    assert r.returncode == 0, r.stderr[-2000:] + log
    (one,) = (build_root / "tmp/one").glob("*.deb")
    (two,) = (other / "tmp/two/deeper").glob("*.deb")
    # diffoscope (the archive's) compares them as Debian's reproducible-builds checks do,
    # and on a difference says where it lies
    d = subprocess.run(["diffoscope", "--text", "-", str(one), str(two)], capture_output=True,
                       text=True)
    assert d.returncode == 0, d.stdout[-4000:] + d.stderr[-2000:]
    assert one.name == two.name and one.read_bytes() == two.read_bytes(), one.name
    kver = json.loads(default_build.with_name("initrd.img.manifest.json").read_text())["kernel_version"]
    assert one.name.startswith(f"linux-initrd-{kver}_1_amd64")
    x = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(one), str(x)], check=True)
    assert (x / f"usr/lib/modules/{kver}/initrd").read_bytes() == default_build.read_bytes()
    assert (x / f"usr/lib/modules/{kver}/initrd.manifest.json").is_file()
    uki = x / f"usr/lib/modules/{kver}/uki.efi"
    out = tmp_path / "initrd-section"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.initrd", str(uki), str(out)],
                   check=True)
    assert out.read_bytes().rstrip(b"\0") == default_build.read_bytes().rstrip(b"\0")
    fields = subprocess.run(["dpkg-deb", "-f", str(one), "Depends"], capture_output=True,
                            text=True, check=True).stdout
    assert f"linux-image-{kver}" in fields
    _dracut_plugin_takes_the_vendor_initrd(x, kver, tmp_path, default_build)


def _dracut_plugin_takes_the_vendor_initrd(root: Path, kver: str, tmp: Path,
                                           default_build: Path) -> None:
    """The reference: trixie's dracut kernel-install plugin, given a kernel image in
    /usr/lib/modules/KVER (as kernel-install is called for it there), copies the vendor
    initrd beside it instead of running dracut."""
    from rdforge.config import Config
    from rdforge.sources.fetch import fetch_all
    from rdforge.sources.plan import load_universe

    pkg = load_universe(Config()).universe.candidates["dracut-core"]
    dracut = tmp / "dracut"
    subprocess.run(["dpkg-deb", "-x", str(fetch_all([pkg], False)[0]), str(dracut)], check=True)
    moddir = root / f"usr/lib/modules/{kver}"
    (moddir / "vmlinuz").write_bytes(b"a kernel image")
    staging = tmp / "staging"
    staging.mkdir()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KERNEL_INSTALL_STAGING_AREA": str(staging),
           "KERNEL_INSTALL_LAYOUT": "bls", "KERNEL_INSTALL_INITRD_GENERATOR": "dracut",
           "KERNEL_INSTALL_VERBOSE": "1"}
    r = subprocess.run(["bash", str(dracut / "usr/lib/kernel/install.d/50-dracut.install"), "add",
                        kver, str(tmp / "entry"), str(moddir / "vmlinuz")], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipping generating a new one" in r.stdout
    assert (staging / "initrd").read_bytes() == default_build.read_bytes()
