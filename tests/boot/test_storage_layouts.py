"""The generic image boots the storage stacks a Debian install makes, on disks that trixie's
own lvm2, mdadm, cryptsetup and btrfs-progs wrote (rdforge.vm.layouts)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from rdforge.vm.boot import BootOptions, BootResult, boot, default_root
from rdforge.vm.layouts import BY_NAME, LUKS2_UUID, PASSPHRASE, layout_disks, layout_tpm
from rdforge.vm.rootfs import FS_UUID, LABEL

pytestmark = [pytest.mark.boot, pytest.mark.integration]
TIMEOUT = 300


PROMPT = "Please enter passphrase for disk"


def boot_layout(initrd: Path, name: str, root_arg: str = "", members: int | None = None,
                append: str = "", type_passphrase: bool | None = None,
                **kw: object) -> BootResult:
    """Boot the layout's disks (with a copy of the factory's TPM for a TPM-enrolled one); the
    passphrase is typed at the prompt when the layout asks for one or type_passphrase says so,
    and any other prompt fails the boot."""
    layout = BY_NAME[name]
    source = default_root(BootOptions())
    disks = layout_disks(layout, source)[:members]
    typing = layout.passphrase if type_passphrase is None else type_passphrase
    typed = ((PROMPT, PASSPHRASE + "\n"),) if typing else ()
    with tempfile.TemporaryDirectory(prefix="rdforge-layout-tpm-") as tmp:
        tpm = layout_tpm(source, Path(tmp, "tpm")) if layout.tpm else None
        opts = BootOptions(initrd=initrd, echo=False, timeout=TIMEOUT, root_image=disks[0],
                           disks=tuple(disks[1:]), root_arg=root_arg or layout.root_arg,
                           append=append, console_input=typed, tpm_state=tpm,
                           expect_fail=() if typing else (PROMPT,),
                           **kw)  # type: ignore[arg-type]
        return boot(opts)


# The kernel names the block device it mounted the root from: the stack's top device, not
# a member (the device mapper's dm-N, an md array, or btrfs's first device).
ROOT_DEVICE = {
    "lvm": r"EXT4-fs \(dm-\d+\): mounted", "lvm-dash": r"EXT4-fs \(dm-\d+\): mounted",
    "luks-lvm": r"EXT4-fs \(dm-\d+\): mounted", "luks1": r"EXT4-fs \(dm-\d+\): mounted",
    "raid1": r"EXT4-fs \(md\d+\): mounted", "raid1-meta10": r"EXT4-fs \(md\d+\): mounted",
    "raid1-meta090": r"EXT4-fs \(md\d+\): mounted", "raid5": r"EXT4-fs \(md\d+\): mounted",
    "enc-raid-lvm": r"EXT4-fs \(dm-\d+\): mounted", "luks-tpm": r"EXT4-fs \(dm-\d+\): mounted",
    "lvm-span": r"EXT4-fs \(dm-\d+\): mounted",
    "btrfs-subvol": r"BTRFS info \(device vda\)", "btrfs-raid1": r"BTRFS info \(device vd[ab]\)",
}


@pytest.mark.parametrize("name", sorted(ROOT_DEVICE))
def test_layout_boots_to_its_root(default_build: Path, name: str) -> None:
    res = boot_layout(default_build, name)
    assert res.ok, f"{name}: {res.reason}\n{res.console[-3000:]}"
    assert re.search(ROOT_DEVICE[name], res.console), f"{name}: root not from the stack"
    if BY_NAME[name].passphrase:
        assert PROMPT in res.console
    # A TPM-enrolled volume (luks-tpm) opens with no prompt: boot_layout fails on one.
    if name.startswith("raid") or name == "enc-raid-lvm":
        # All members were there: assembled whole at once, no degraded start.
        assert "DEGRADED" not in res.console


@pytest.mark.parametrize("root_arg", ["root=/dev/vg0/root", f"root=UUID={FS_UUID}",
                                      f"root=LABEL={LABEL}"])
def test_lvm_root_by_the_names_fstab_uses(default_build: Path, root_arg: str) -> None:
    res = boot_layout(default_build, "lvm", root_arg=root_arg)
    assert res.ok, f"{root_arg}: {res.reason}\n{res.console[-3000:]}"
    assert re.search(ROOT_DEVICE["lvm"], res.console)


def test_degraded_raid1_starts_after_a_bounded_wait_and_says_what_is_missing(
        default_build: Path) -> None:
    res = boot_layout(default_build, "raid1", members=1)
    assert res.ok, res.reason + res.console[-3000:]
    line = next((x for x in res.console.splitlines() if "started DEGRADED" in x), "")
    assert "md RAID md" in line and "1 of 2 devices" in line, res.console[-3000:]
    assert "missing: slot 1" in line and "present: /dev/vda1 (slot 0)" in line, line
    assert re.search(r"md/raid1:md\d+: active with 1 out of 2 mirrors", res.console)
    # mdadm's last-resort timer waits 30 s for the other member; nothing else waits.
    assert res.guest_uptime is not None and res.guest_uptime < 90, res.guest_uptime


def test_tpm_refuses_after_a_pcr_it_is_bound_to_changes_then_the_passphrase_opens_it(
        default_build: Path) -> None:
    """The same disk and TPM as luks-tpm, but a network card was added: the firmware ran its
    option ROM (iPXE) and measured it into PCR 2, one of the PCRs the TPM2 slot is bound to.
    The TPM refuses to unseal, and systemd-cryptsetup falls back to asking."""
    res = boot_layout(default_build, "luks-tpm", type_passphrase=True,
                      extra_qemu=("-nic", "user,model=virtio-net-pci"))
    assert res.ok, res.reason + res.console[-3000:]
    assert PROMPT in res.console, res.console[-3000:]
    assert re.search(ROOT_DEVICE["luks-tpm"], res.console)


@pytest.mark.parametrize("key", ["null", "tpm2"])
def test_luks_opened_by_a_passphrase_credential_without_a_prompt(default_build: Path,
                                                                  tmp_path: Path, key: str) -> None:
    """systemd-cryptsetup's cryptsetup.passphrase credential, handed over as systemd-stub
    does (/.extra/credentials): the machine-local secret opens the disk of a vendor image.
    `null`: encrypted with the null key (integrity only); `tpm2`: sealed to this machine's TPM
    by `rdforge credential --encrypt tpm2`, so it is useless anywhere else."""
    from conftest import seal_to_swtpm

    from rdforge.formats import creds

    cred = tmp_path / "cryptsetup.passphrase.cred"
    tpm = None
    if key == "null":
        cred.write_bytes(creds.armor(creds.encrypt("cryptsetup.passphrase", PASSPHRASE.encode())))
    else:
        tpm = tmp_path / "tpm"
        tpm.mkdir()
        r = seal_to_swtpm(tpm, "cryptsetup.passphrase", PASSPHRASE, cred)
        assert r.returncode == 0, r.stderr
    layout = BY_NAME["luks-lvm"]
    disks = layout_disks(layout, default_root(BootOptions()))
    res = boot(BootOptions(initrd=default_build, echo=False, timeout=TIMEOUT, root_image=disks[0],
                           root_arg=layout.root_arg, credentials=(cred,), tpm_state=tpm,
                           expect_fail=(PROMPT,)))
    assert res.ok, res.reason + res.console[-3000:]
    assert re.search(ROOT_DEVICE["luks-lvm"], res.console)
    if key == "tpm2":
        # Not the null key: a fresh TPM (a replaced board) cannot unseal it. That must not
        # lock the owner out: the credential is dropped, named on the console, and the
        # passphrase typed at the prompt opens the disk.
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        res = boot(BootOptions(initrd=default_build, echo=False, timeout=TIMEOUT,
                               root_image=disks[0], root_arg=layout.root_arg, credentials=(cred,),
                               tpm_state=fresh, console_input=((PROMPT, PASSPHRASE + "\n"),)))
        assert res.ok, res.reason + res.console[-3000:]
        assert ("rdforge: credential cryptsetup.passphrase cannot be decrypted on this machine"
                in res.console), res.console[-3000:]
        assert PROMPT in res.console


def test_a_device_that_never_appears_is_named_before_the_emergency_shell(
        default_build: Path) -> None:
    """The installer layout's command line, but its disk is not attached (another VG's disk
    is): before the emergency shell the console names the LUKS volume and the root LV that
    never appeared, what waited for them, and which physical volumes LVM did see."""
    other = layout_disks(BY_NAME["lvm"], default_root(BootOptions()))
    res = boot(BootOptions(initrd=default_build, echo=False, timeout=TIMEOUT, root_image=other[0],
                           root_arg=BY_NAME["luks-lvm"].root_arg,
                           append="systemd.default_device_timeout_sec=15",
                           expect="the root account is locked", stop_on_fail=False))
    assert res.ok, res.reason + res.console[-3000:]
    said = [x.split("rdforge: ", 1)[1] for x in res.console.splitlines() if "rdforge: " in x]
    luks = f"/dev/disk/by-uuid/{LUKS2_UUID}"
    assert any(x.startswith(f"device {luks} never appeared (waited for by: systemd-cryptsetup@")
               for x in said), said
    assert any(f"{luks} is the LUKS volume of rd.luks.uuid" in x for x in said), said
    assert any(x.startswith("device /dev/mapper/debian--vg-root never appeared (waited for by: ")
               and "sysroot.mount" in x for x in said), said
    assert ("  LVM: no physical volume of volume group debian-vg was seen (physical volumes "
            "seen: /dev/vda in vg0)") in said, said


def test_a_thin_root_boots_with_its_pool_activated_unchecked(default_build: Path) -> None:
    """The thin-pool target is in the image, thin_check is not: lvm activates the pool
    without the metadata check and says so (the journal, forwarded to the console here)."""
    res = boot_layout(default_build, "lvm-thin", append="systemd.journald.forward_to_console=1")
    assert res.ok, res.reason + res.console[-3000:]
    assert re.search(ROOT_DEVICE["lvm"], res.console)
    assert "Check is skipped, please install recommended missing binary /usr/sbin/thin_check" \
        in res.console, res.console[-3000:]


def emergency_lines(initrd: Path, name: str, members: int | None = None,
                    wait: int = 15) -> list[str]:
    """Boot a layout that cannot reach its root (systemd's device timeout shortened to
    `wait` seconds); returns what rdforge said on the console before the emergency shell."""
    res = boot_layout(initrd, name, members=members,
                      append=f"systemd.default_device_timeout_sec={wait}",
                      expect="the root account is locked", stop_on_fail=False)
    assert res.ok, res.reason + res.console[-3000:]
    return [x.split("rdforge: ", 1)[1] for x in res.console.splitlines() if "rdforge: " in x]


def test_a_volume_group_lacking_a_physical_volume_is_named(default_build: Path) -> None:
    """The root LV spans two disks and the second is not attached: LVM's event-driven
    activation waits for a complete volume group, and the console says what it lacks."""
    said = emergency_lines(default_build, "lvm-span", members=1)
    assert any(x.startswith("device /dev/vgspan/root never appeared") for x in said), said
    assert "  LVM: volume group vgspan lacks 1 of its 2 physical volumes" in said, said


def test_a_raid5_with_too_few_members_is_named_inactive(default_build: Path) -> None:
    """One of three RAID5 members: mdadm's last-resort start (after 30 s) cannot run it
    either, so the array stays inactive, and the console names it and the member it has."""
    said = emergency_lines(default_build, "raid5", members=1, wait=60)
    assert any(x.startswith(f"device /dev/disk/by-uuid/{FS_UUID} never appeared") for x in said), said
    line = next((x for x in said if " is inactive" in x), "")
    assert re.match(r"md RAID md\d+ is inactive \(raid5 of 3 devices\): too few of its members "
                    r"appeared to start it; present: vda\[0\]", line), said


def test_a_crypttab_the_image_carries_opens_the_disk_without_rd_luks(
        default_build: Path, tmp_path: Path) -> None:
    """An /etc/crypttab put into the image by the config (`files`), as a host-only build
    puts the host's: systemd-cryptsetup-generator in the initrd takes its lines, so the kernel
    command line names only the root."""
    from rdforge.config import Config
    from rdforge.outputs.initrd import build
    from rdforge.vm.layouts import LUKS1_UUID

    crypttab = tmp_path / "crypttab"
    crypttab.write_text(f"cryptroot UUID={LUKS1_UUID} none luks\n")
    img = tmp_path / "crypttab.img"
    build(Config(output=str(img), lock=str(tmp_path / "crypttab.lock"),
                 files={"/etc/crypttab": str(crypttab)}))
    res = boot_layout(img, "luks1", root_arg="root=/dev/mapper/cryptroot")
    assert res.ok, res.reason + res.console[-3000:]
    assert PROMPT in res.console and re.search(ROOT_DEVICE["luks1"], res.console)
