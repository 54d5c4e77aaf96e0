"""End to end: a trixie system with systemd-boot and rdforge's packages; two kernel packages
installed with dpkg (trixie's 6.12.117, then trixie-security's newer one) each run rdforge's
postinst hook and systemd-boot's kernel-install hook; booted under OVMF, systemd-boot picks
the newest entry, and its rdforge initrd brings the system up on the new kernel."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rdforge.config import Config
from rdforge.sources.cache import cache_root
from rdforge.sources.fetch import fetch_all
from rdforge.sources.plan import load_universe
from rdforge.vm.boot import BootOptions, boot
from rdforge.vm.trixie import run_in, system_tarball, unpack_system

pytestmark = [pytest.mark.boot, pytest.mark.integration]
PACKAGES = ["systemd", "systemd-sysv", "systemd-boot", "udev", "python3", "python3-zstandard",
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
            files: dict[str, str]) -> tuple[Path, Path]:
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
    (root / "etc/systemd/system/multi-user.target.wants/rdforge-booted.service").symlink_to(
        "/etc/systemd/system/rdforge-booted.service")
    (root / "etc/kernel").mkdir(exist_ok=True)
    (root / "etc/kernel/cmdline").write_text(f"root=LABEL={LABEL} rw console=ttyS0 panic=-1\n")
    (root / "etc/kernel/entry-token").write_text("rdforge\n")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
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


def test_systemd_boot_starts_the_new_kernel_with_rdforges_initrd(rdforge_debs: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    (old, old_deb), (new, new_deb) = _kernels()
    disk, esp = _system(tmp_path, rdforge_debs, [(old, old_deb), (new, new_deb)],
                        {"etc/kernel/install.conf": "layout=bls\n"})
    entries = sorted((esp / "loader/entries").glob("*.conf"))
    assert [e.name for e in entries] == [f"rdforge-{old}.conf", f"rdforge-{new}.conf"], entries
    for kver in (old, new):  # each entry's initrd is what rdforge's hook made for it
        assert (esp / f"rdforge/{kver}/initrd.img-{kver}").read_bytes() == \
            (tmp_path / f"initrd.img-{kver}").read_bytes()
    res = boot(BootOptions(esp_tree=esp, root_image=disk, expect="RDFORGE-BOOTED",
                           memory_mb=2048, timeout=900, echo=False))
    assert res.ok, res.reason + res.console[-4000:]
    assert f"RDFORGE-BOOTED {new}" in res.console


def test_secure_boot_starts_the_signed_uki_kernel_install_made_with_rdforge(
        rdforge_debs: dict[str, Path], vendor_keys: tuple[Path, Path], tmp_path: Path) -> None:
    """layout=uki with uki_generator=rdforge: the kernel package's installation makes a UKI
    signed with the key /etc/kernel/uki.conf names; with that certificate in db (and
    systemd-boot signed with it), Secure Boot runs systemd-boot, then the UKI."""
    from rdforge.outputs.uki import sign_file

    key, cert = vendor_keys
    (_old, _), (new, new_deb) = _kernels()
    disk, esp = _system(tmp_path, rdforge_debs, [(new, new_deb)], {
        "etc/kernel/install.conf": "layout=uki\nuki_generator=rdforge\n",
        "etc/kernel/db.key": key.read_text(), "etc/kernel/db.crt": cert.read_text(),
        "etc/kernel/uki.conf": "[UKI]\nSecureBootPrivateKey=/etc/kernel/db.key\n"
                               "SecureBootCertificate=/etc/kernel/db.crt\n"})
    uki = esp / f"EFI/Linux/rdforge-{new}.efi"
    assert subprocess.run(["sbverify", "--cert", str(cert), str(uki)],
                          capture_output=True).returncode == 0
    assert not list((esp / "loader/entries").glob("*.conf"))  # a UKI needs no entry file
    for loader in ("EFI/systemd/systemd-bootx64.efi", "EFI/BOOT/BOOTX64.EFI"):
        # bootctl installed Debian's signed systemd-boot: re-signed with this machine's key
        sign_file(esp / loader, key, cert, esp / loader, detached=False, replace=True)
    res = boot(BootOptions(esp_tree=esp, root_image=disk, expect="RDFORGE-BOOTED",
                           secure_boot_cert=cert, memory_mb=2048, timeout=900, echo=False))
    assert res.ok, res.reason + res.console[-4000:]
    assert "secureboot: Secure boot enabled" in res.console
    assert f"RDFORGE-BOOTED {new}" in res.console
