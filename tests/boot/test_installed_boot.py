"""End to end: a trixie system with systemd-boot and rdforge's packages, booted under OVMF.
layout=bls: booted on trixie's older kernel, apt in the system installs the newer kernel and
its vendor initrd package from a local repository; the hooks run there, and the next boot,
systemd-boot's choice, comes up on the new kernel. layout=uki with Secure Boot: the kernel
package installed by dpkg makes a UKI signed with the key in db, which the firmware runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdforge.config import Config
from rdforge.outputs.initrd import build
from rdforge.sources.cache import cache_root
from rdforge.sources.fetch import fetch_all
from rdforge.sources.plan import load_universe
from rdforge.vm.boot import BootOptions, BootResult, boot
from rdforge.vm.trixie import run_in, system_tarball, unpack_system

pytestmark = [pytest.mark.boot, pytest.mark.integration]
# systemd-boot-efi: the EFI stub the guest's kernel-install builds UKIs with (offline)
PACKAGES = ["systemd", "systemd-sysv", "systemd-boot", "systemd-boot-efi", "udev", "python3", "python3-zstandard",
            "python3-cryptography", "python3-lz4", "gpgv", "debian-archive-keyring", "kmod",
            "linux-base", "e2fsprogs"]
LABEL = "trixie-root"
UNIT = """[Unit]
Description=say which kernel the installed system runs
After=basic.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo RDFORGE-BOOTED $$(uname -r) > /dev/console'
[Install]
WantedBy=multi-user.target
"""


def _kernels() -> list[tuple[str, Path]]:
    """The two newest trixie kernel ABIs the archive has, oldest first, with their .debs."""
    u = load_universe(Config()).universe
    names = sorted((n for n in u.candidates if re.fullmatch(r"linux-image-6\.\d+\.\d+\+deb13-amd64", n)),
                   key=lambda n: [int(x) for x in re.findall(r"\d+", n)[:3]])
    if len(names) < 2:
        pytest.skip("the archive has fewer than two trixie kernel ABIs")
    pkgs = [u.candidates[n] for n in names[-2:]]
    return [(p.name.removeprefix("linux-image-"), d) for p, d in zip(pkgs, fetch_all(pkgs, False), strict=True)]


def _system(tmp: Path, rdforge_debs: dict[str, Path], kernels: list[tuple[str, Path]],
            files: dict[str, str], blobs: dict[str, bytes] | None = None,
            enable: list[str] | None = None) -> tuple[Path, Path]:
    """The trixie system's root image and ESP tree after dpkg installed rdforge's packages,
    ran bootctl install, then installed the kernel packages in order."""
    if shutil.which("mmdebstrap") is None:
        pytest.skip("needs mmdebstrap")
    root = unpack_system(system_tarball(PACKAGES), tmp / "root")
    for name, p in rdforge_debs.items():
        shutil.copyfile(p, root / "tmp" / name)
    for i, (_kver, deb) in enumerate(kernels):
        shutil.copyfile(deb, root / f"tmp/kernel{i}.deb")
    (root / "etc/systemd/system/rdforge-booted.service").write_text(UNIT)
    (root / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True, exist_ok=True)
    for unit in ["rdforge-booted.service", *(enable or [])]:
        (root / f"etc/systemd/system/multi-user.target.wants/{unit}").symlink_to(
            f"/etc/systemd/system/{unit}")
    (root / "etc/kernel").mkdir(exist_ok=True)
    (root / "etc/kernel/cmdline").write_text(f"root=LABEL={LABEL} rw console=ttyS0 panic=-1\n")
    (root / "etc/kernel/entry-token").write_text("rdforge\n")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel, data in (blobs or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    script = ("export SYSTEMD_RELAX_ESP_CHECKS=1 SYSTEMD_RELAX_XBOOTLDR_CHECKS=1\n"
              "dpkg -i /tmp/rdforge_0.1.0_all.deb /tmp/rdforge-initramfs_0.1.0_all.deb\n"
              "bootctl install --esp-path=/efi --no-variables\n"
              + "".join(f"dpkg -i /tmp/kernel{i}.deb\n" for i in range(len(kernels)))
              + "rm -f /tmp/*.deb\nrm -rf /tmp/esp && cp -a /efi /tmp/esp\n")
    r = run_in(root, script, binds={"/root/.cache/rdforge": cache_root()}, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    shutil.move(root / "tmp/esp", tmp / "esp")
    for kver, _deb in kernels:
        shutil.copyfile(root / f"boot/initrd.img-{kver}", tmp / f"initrd.img-{kver}")
    disk = tmp / "root.img"
    size_mb = sum(f.lstat().st_size for f in root.rglob("*") if f.is_file()) // (1 << 20) + 400
    subprocess.run(["mkfs.ext4", "-q", "-L", LABEL, "-d", str(root), str(disk), f"{size_mb}M"],
                   check=True)
    shutil.rmtree(root)
    return disk, tmp / "esp"


INSTALL_UNIT = """[Unit]
Description=install the new kernel from the local repository with apt, then power off
After=basic.target rdforge-booted.service
ConditionPathExists=/etc/rdforge-new-packages
[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/bin/sh /usr/local/sbin/rdforge-install-new
[Install]
WantedBy=multi-user.target
"""
# apt reads only the local repository (the guest has no network); a failure says so at once
INSTALL_SCRIPT = """trap 'echo RDFORGE-INSTALL-FAILED > /dev/console' EXIT
set -e
export DEBIAN_FRONTEND=noninteractive SYSTEMD_RELAX_ESP_CHECKS=1 SYSTEMD_RELAX_XBOOTLDR_CHECKS=1
packages=$(cat /etc/rdforge-new-packages)
rm /etc/rdforge-new-packages
set -- -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/local.list -o Dir::Etc::sourceparts=-
apt-get "$@" update
apt-get "$@" install -y $packages
sync
trap - EXIT
echo RDFORGE-INSTALLED > /dev/console
systemctl poweroff
"""


def _vendor_initrd_deb(kver: str, initrd: Path, dest: Path) -> Path:
    """linux-initrd-KVER: the vendor initrd at /usr/lib/modules/KVER/initrd, laid out as
    `rdforge debian-package` lays it out (its own build is tested in test_installed_system)."""
    d = dest / "pkg"
    (d / "DEBIAN").mkdir(parents=True)
    (d / "DEBIAN/control").write_text(
        f"Package: linux-initrd-{kver}\nVersion: 1\nArchitecture: amd64\n"
        "Maintainer: rdforge tests <tests@rdforge.invalid>\n"
        f"Enhances: linux-image-{kver}\nDescription: rdforge's vendor initrd for {kver}\n")
    (d / f"usr/lib/modules/{kver}").mkdir(parents=True)
    shutil.copyfile(initrd, d / f"usr/lib/modules/{kver}/initrd")
    shutil.copyfile(f"{initrd}.manifest.json", d / f"usr/lib/modules/{kver}/initrd.manifest.json")
    out = dest / f"linux-initrd-{kver}_1_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(d), str(out)], check=True,
                   capture_output=True)
    return out


def _local_repository(debs: list[Path]) -> dict[str, bytes]:
    """A flat apt repository (files for /srv/repo) of debs, with its Packages index, and the
    source line that names it."""
    import hashlib

    files: dict[str, bytes] = {}
    stanzas = []
    for deb in debs:
        data = deb.read_bytes()
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                                 check=True).stdout.rstrip("\n")
        stanzas.append(f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
        files[f"srv/repo/{deb.name}"] = data
    files["srv/repo/Packages"] = "\n".join(stanzas).encode()
    files["etc/apt/sources.list.d/local.list"] = b"deb [trusted=yes] file:/srv/repo ./\n"
    return files


@dataclass
class TwoBoots:
    old: str
    new: str
    esp: Path  # the ESP image, as the guest left it
    initrd: Path  # the new kernel's vendor initrd
    first: BootResult
    second: BootResult


def _install_in_the_guest(tmp: Path, rdforge_debs: dict[str, Path], files: dict[str, str],
                          prepare_esp: Callable[[Path], None] = lambda esp: None,
                          secure_boot_cert: Path | None = None) -> TwoBoots:
    """The system with the older kernel installed boots; apt in it installs the newer kernel
    and its vendor initrd package from a local repository; it boots again."""
    (old, old_deb), (new, new_deb) = _kernels()
    initrd = tmp / "new.img"
    build(Config(output=str(initrd), lock=str(tmp / "new.lock"), kernel_version=new))
    repo = _local_repository([new_deb, _vendor_initrd_deb(new, initrd, tmp)])
    disk, esp_tree = _system(tmp, rdforge_debs, [(old, old_deb)], {
        **files,
        "etc/fstab": "LABEL=ESP /efi vfat umask=0077 0 0\n",
        "etc/rdforge-new-packages": f"linux-image-{new} linux-initrd-{new}\n",
        "etc/systemd/system/rdforge-install.service": INSTALL_UNIT,
        "usr/local/sbin/rdforge-install-new": INSTALL_SCRIPT,
    }, repo, enable=["rdforge-install.service"])
    prepare_esp(esp_tree)
    from rdforge.vm.esp import make_esp_from_tree

    esp = make_esp_from_tree(esp_tree, tmp / "esp.img", room_mib=96)
    first = boot(BootOptions(esp_image=esp, root_image=disk, disks_writable=True,
                             secure_boot_cert=secure_boot_cert, expect="RDFORGE-INSTALLED",
                             expect_fail=("RDFORGE-INSTALL-FAILED",), memory_mb=2048,
                             timeout=1800, echo=False))
    assert first.ok, first.reason + first.console[-6000:]
    assert f"RDFORGE-BOOTED {old}" in first.console
    assert f"rdforge: {new}: vendor /boot/initrd.img-{new}" in first.console, first.console[-6000:]
    second = boot(BootOptions(esp_image=esp, root_image=disk, disks_writable=True,
                              secure_boot_cert=secure_boot_cert, expect="RDFORGE-BOOTED",
                              memory_mb=2048, timeout=900, echo=False))
    assert second.ok, second.reason + second.console[-4000:]
    assert f"RDFORGE-BOOTED {new}" in second.console
    return TwoBoots(old, new, esp, initrd, first, second)


def _esp_file(esp: Path, path: str, dest: Path) -> Path:
    subprocess.run(["mcopy", "-n", "-i", str(esp), f"::/{path}", str(dest)], check=True)
    return dest


def test_apt_in_the_booted_system_installs_a_kernel_and_systemd_boot_starts_it(
        rdforge_debs: dict[str, Path], tmp_path: Path) -> None:
    """layout=bls: rdforge's hook in the guest takes the vendor initrd, systemd-boot's adds
    the entry to the ESP, and systemd-boot's choice at the next boot is the new kernel."""
    r = _install_in_the_guest(tmp_path, rdforge_debs, {"etc/kernel/install.conf": "layout=bls\n"})
    entries = subprocess.run(["mdir", "-b", "-i", str(r.esp), "::/loader/entries"],
                             capture_output=True, text=True).stdout
    assert f"rdforge-{r.new}.conf" in entries and f"rdforge-{r.old}.conf" in entries, entries
    on_esp = _esp_file(r.esp, f"rdforge/{r.new}/initrd.img-{r.new}", tmp_path / "esp-initrd")
    assert on_esp.read_bytes().endswith(r.initrd.read_bytes())  # after this CPU's microcode


def test_secure_boot_runs_the_uki_the_guest_s_kernel_install_made_and_signed(
        rdforge_debs: dict[str, Path], vendor_keys: tuple[Path, Path], tmp_path: Path) -> None:
    """layout=uki with uki_generator=rdforge, Secure Boot on with the vendor certificate in
    db: the older kernel's UKI (made in the chroot) boots; in the guest, installing the newer
    kernel makes its UKI from the vendor initrd, signed with the key /etc/kernel/uki.conf
    names; the firmware runs systemd-boot, then that UKI."""
    from rdforge.outputs.uki import sign_file

    key, cert = vendor_keys

    def resign_loader(esp: Path) -> None:
        assert not list((esp / "loader/entries").glob("*.conf"))  # a UKI needs no entry file
        for loader in ("EFI/systemd/systemd-bootx64.efi", "EFI/BOOT/BOOTX64.EFI"):
            # bootctl installed Debian's signed systemd-boot: re-signed with this machine's key
            sign_file(esp / loader, key, cert, esp / loader, detached=False, replace=True)

    r = _install_in_the_guest(tmp_path, rdforge_debs, {
        "etc/kernel/install.conf": "layout=uki\nuki_generator=rdforge\n",
        "etc/kernel/db.key": key.read_text(), "etc/kernel/db.crt": cert.read_text(),
        "etc/kernel/uki.conf": "[UKI]\nSecureBootPrivateKey=/etc/kernel/db.key\n"
                               "SecureBootCertificate=/etc/kernel/db.crt\n"},
        resign_loader, secure_boot_cert=cert)
    assert "secureboot: Secure boot enabled" in r.second.console
    uki = _esp_file(r.esp, f"EFI/Linux/rdforge-{r.new}.efi", tmp_path / "new.efi")
    assert subprocess.run(["sbverify", "--cert", str(cert), str(uki)],
                          capture_output=True).returncode == 0
    section = tmp_path / "initrd-section"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.initrd", str(uki), str(section)],
                   check=True)
    assert section.read_bytes().rstrip(b"\0").endswith(r.initrd.read_bytes().rstrip(b"\0"))
