"""Fix-ups that replace maintainer scripts: accounts from sysusers.d."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rdforge.tree import fixups
from rdforge.tree.unpack import new_tree


def test_sysusers_lines_become_locked_accounts_root_password_only_from_credentials() -> None:
    t = new_tree()
    t.add_file("usr/lib/sysusers.d/basic.conf",
               b'g root 0 -\nu root 0 - /root /bin/bash\ng tty 5 -\nu nobody 65534:65534 - /nonexistent\n')
    t.add_file("usr/lib/sysusers.d/systemd-network.conf",
               b'u! systemd-network - "systemd Network Management"\n')
    t.add_file("usr/lib/sysusers.d/other.conf", b'u svc -\nm svc tty\n')
    t.add_file("usr/lib/systemd/system/systemd-sysusers.service", b"[Unit]\n")
    t.add_file("usr/bin/systemd-sysusers", b"\x7fELF")
    t.add_file("usr/bin/bash", b"\x7fELF")
    t.add_file("usr/lib/systemd/system/systemd-tmpfiles-setup-dev.service", b"[Unit]\n")
    fixups.users_and_groups(t)
    passwd = t.entries["etc/passwd"].data.decode().splitlines()
    names = [line.split(":")[0] for line in passwd]
    assert names[0] == "root" and passwd[0].startswith("root:x:0:0:")
    assert "systemd-network" in names and "svc" in names and "nobody" in names
    net = next(line for line in passwd if line.startswith("systemd-network:")).split(":")
    assert int(net[2]) < 1000 and net[4] == "systemd Network Management"
    shadow = t.entries["etc/shadow"].data.decode().splitlines()
    assert all(line.split(":")[1] == "!*" for line in shadow) and shadow[0].startswith("root:")
    group = t.entries["etc/group"].data.decode()
    assert "tty:x:5:svc" in group and "root:x:0:" in group
    wants = "usr/lib/systemd/system/sysinit.target.wants"
    assert "rdforge-root-password.service" in t.entries[f"{wants}/rdforge-root-password.service"].target
    # The locked fallback runs only when the credential unit fails, not on every boot.
    assert f"{wants}/rdforge-root-account.service" not in t.entries
    assert "usr/lib/systemd/system/rdforge-root-account.service" in t.entries
    assert "usr/lib/systemd/system/systemd-sysusers.service.d/10-rdforge.conf" not in t.entries
    unit = t.entries["usr/lib/systemd/system/rdforge-root-password.service"].data.decode()
    # It starts only when a passwd.* credential was passed, plain or encrypted.
    assert "ConditionPathExistsGlob=|/run/credentials/@system/passwd.*" in unit
    assert "ConditionPathExistsGlob=|/run/credentials/@encrypted/passwd.*" in unit
    assert "ImportCredential=passwd.*" in unit and "udevd" not in unit
    assert "OnFailure=rdforge-root-account.service" in unit
    assert "Before=sysinit.target systemd-tmpfiles-setup.service emergency.service" in unit
    assert "ExecStartPre=/usr/lib/rdforge/forget-root" in unit
    assert t.entries["usr/lib/rdforge/forget-root"].mode == 0o755
    # With every account made at build time, the second pass over /dev has nothing to add
    # unless a credential brings more accounts.
    dropin = t.entries["usr/lib/systemd/system/systemd-tmpfiles-setup-dev.service.d/10-rdforge.conf"]
    assert dropin.data == b"[Unit]\nConditionCredential=sysusers.extra\n"


def test_forget_root_takes_only_root_out_of_passwd_and_shadow(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nrootless:x:5:5::/:/bin/sh\n"
                                "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n")
    (etc / "shadow").write_text("root:!*:1::::::\nrootless:!*:1::::::\nnobody:!*:1::::::\n")
    script = fixups.FORGET_ROOT_SCRIPT.replace("/etc/", f"{etc}/")
    subprocess.run(["bash", "-c", script], check=True)
    assert (etc / "passwd").read_text() == ("rootless:x:5:5::/:/bin/sh\n"
                                            "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n")
    assert (etc / "shadow").read_text() == "rootless:!*:1::::::\nnobody:!*:1::::::\n"


def test_static_nodes_become_a_tmpfiles_file_and_kmod_static_nodes_has_nothing_to_do() -> None:
    t = new_tree()
    t.add_file("usr/lib/modules/6.1/modules.devname",
               b"# Device nodes to trigger on-demand module loading.\n"
               b"fuse fuse c10:229\ndm_mod mapper/control c10:236\nloop loop-control c10:237\n"
               b"nvme nvme-fabrics c10:122\nvfio vfio/vfio c10:196\nfoo bar b7:0\n")
    assert fixups.static_nodes(t, "6.1") == 6
    conf = t.entries["usr/lib/tmpfiles.d/static-nodes.conf"].data.decode().splitlines()
    # The lines kmod static-nodes --format=tmpfiles writes for the same modules.devname.
    assert conf[1:] == ["c! /dev/fuse 0600 - - - 10:229", "d /dev/mapper 0755 - - -",
                        "c! /dev/mapper/control 0600 - - - 10:236",
                        "c! /dev/loop-control 0600 - - - 10:237",
                        "c! /dev/nvme-fabrics 0600 - - - 10:122", "d /dev/vfio 0755 - - -",
                        "c! /dev/vfio/vfio 0600 - - - 10:196", "b! /dev/bar 0600 - - - 7:0"]
    assert "usr/lib/modules/6.1/modules.devname" not in t.entries
    assert fixups.static_nodes(t, "6.2") == 0


def test_boot_path_unlinks_units_with_no_initrd_job_and_sockets_of_pruned_services() -> None:
    t = new_tree()
    d = "usr/lib/systemd/system"
    for unit, text in (("dev-hugepages.mount", "[Mount]\n"), ("tmp.mount", "[Mount]\n"),
                       ("systemd-hostnamed.socket", "[Socket]\n"),
                       ("systemd-hostnamed.service",
                        "[Service]\nExecStart=/usr/lib/systemd/systemd-hostnamed\n"),
                       ("systemd-journald.socket", "[Socket]\n"),
                       ("systemd-journald.service",
                        "[Service]\nExecStart=/usr/lib/systemd/systemd-journald\n")):
        t.add_file(f"{d}/{unit}", text.encode())
    t.add_file("usr/lib/systemd/systemd-journald", b"\x7fELF")
    t.add_symlink(f"{d}/sysinit.target.wants/dev-hugepages.mount", "../dev-hugepages.mount")
    t.add_symlink(f"{d}/local-fs.target.wants/tmp.mount", "../tmp.mount")
    for s in ("systemd-hostnamed.socket", "systemd-journald.socket"):
        t.add_symlink(f"{d}/sockets.target.wants/{s}", f"../{s}")
    # A unit that never runs in an initrd, and one that runs only there or only with a
    # trigger that may hold: only the first loses its link.
    t.add_file(f"{d}/systemd-random-seed.service",
               b"[Unit]\nConditionPathExists=!/etc/initrd-release\n[Service]\nExecStart=/x\n")
    t.add_file(f"{d}/systemd-pcrphase-initrd.service",
               b"[Unit]\nConditionPathExists=/etc/initrd-release\n[Service]\nExecStart=/x\n")
    t.add_file(f"{d}/either.service",
               b"[Unit]\nConditionPathExists=|!/etc/initrd-release\nConditionPathExists=|/x\n")
    for unit in ("systemd-random-seed.service", "systemd-pcrphase-initrd.service", "either.service"):
        t.add_symlink(f"{d}/sysinit.target.wants/{unit}", f"../{unit}")
    gone = fixups.boot_path(t)
    assert gone == ["sockets.target.wants/systemd-hostnamed.socket",
                    "sysinit.target.wants/dev-hugepages.mount",
                    "sysinit.target.wants/systemd-random-seed.service", "tmp.mount (masked)"]
    assert f"{d}/sysinit.target.wants/systemd-pcrphase-initrd.service" in t.entries
    assert f"{d}/sysinit.target.wants/either.service" in t.entries
    # basic.target wants tmp.mount by name: only a mask keeps it from being mounted.
    assert t.entries["etc/systemd/system/tmp.mount"].target == "/dev/null"
    assert "etc/systemd/system/sys-fs-fuse-connections.mount" not in t.entries  # no such unit
    assert f"{d}/sockets.target.wants/systemd-journald.socket" in t.entries
    assert f"{d}/dev-hugepages.mount" in t.entries  # the unit stays, only its link goes


def test_boot_order_dropins_keep_the_stock_jobs_and_skip_those_without_input() -> None:
    t = new_tree()
    d = "usr/lib/systemd/system"
    t.add_file(f"{d}/systemd-udev-trigger.service",
               b"[Service]\nType=oneshot\nExecStart=-udevadm trigger --type=all --action=add "
               b"--prioritized-subsystem=module,block,tpmrm,net,tty,input\n")
    t.add_file(f"{d}/systemd-udev-load-credentials.service",
               b"[Service]\nExecStart=udevadm control --load-credentials\n"
               b"ImportCredential=udev.conf.*\nImportCredential=udev.rules.*\n")
    t.add_file(f"{d}/systemd-sysctl.service",
               b"[Service]\nExecStart=/usr/lib/systemd/systemd-sysctl\nImportCredential=sysctl.*\n")
    t.add_file(f"{d}/initrd-parse-etc.service",
               b"[Service]\nType=oneshot\nExecStart=/usr/lib/systemd/systemd-sysroot-fstab-check\n"
               b"ExecStart=systemctl --no-block start initrd-cleanup.service\n")
    t.add_file(f"{d}/initrd-cleanup.service",
               b"[Unit]\nAfter=initrd-root-fs.target initrd-fs.target initrd.target\n"
               b"[Service]\nType=oneshot\n"
               b"ExecStart=systemctl --no-block isolate initrd-switch-root.target\n")
    t.add_file("usr/bin/bash", b"\x7fELF")
    gen = "usr/lib/systemd/system-generators/systemd-integritysetup-generator"
    t.add_file(gen, b"\x7fELF")
    assert fixups.boot_order(t) == [
        "systemd-udev-trigger.service", "systemd-integritysetup-generator (removed)",
        "systemd-udev-load-credentials.service", "systemd-sysctl.service",
        "initrd-parse-etc.service"]
    # initrd-cleanup keeps its own systemctl isolate call.
    assert f"{d}/initrd-cleanup.service.d/10-rdforge.conf" not in t.entries
    trigger = t.entries[f"{d}/systemd-udev-trigger.service.d/10-rdforge.conf"].data.decode()
    # Devices only (no module or driver objects, no terminals), storage ahead of the stock
    # order.
    assert trigger == ("[Service]\nExecStart=\nExecStart=-udevadm trigger --type=devices "
                       "--action=add --subsystem-nomatch=tty --subsystem-nomatch=vc "
                       "--subsystem-nomatch=vtconsole --prioritized-subsystem=block,pci,virtio,"
                       "scsi,nvme,usb,mmc,module,tpmrm,net,input\n")
    creds = t.entries[f"{d}/systemd-udev-load-credentials.service.d/10-rdforge.conf"].data.decode()
    assert creds.splitlines() == [
        "[Unit]",
        "ConditionPathExistsGlob=|/run/credentials/@system/udev.conf.*",
        "ConditionPathExistsGlob=|/run/credentials/@encrypted/udev.conf.*",
        "ConditionPathExistsGlob=|/run/credentials/@system/udev.rules.*",
        "ConditionPathExistsGlob=|/run/credentials/@encrypted/udev.rules.*"]
    sysctl = t.entries[f"{d}/systemd-sysctl.service.d/10-rdforge.conf"].data.decode().splitlines()
    assert "ConditionDirectoryNotEmpty=|/usr/lib/sysctl.d" in sysctl
    assert "ConditionDirectoryNotEmpty=|/etc/sysctl.d" in sysctl
    assert "ConditionPathExistsGlob=|/run/credentials/@encrypted/sysctl.*" in sysctl
    parse = t.entries[f"{d}/initrd-parse-etc.service.d/10-rdforge.conf"].data.decode()
    # initrd-cleanup is started by the manager on success, in the mode systemctl used.
    assert parse == ("[Unit]\nOnSuccess=initrd-cleanup.service\nOnSuccessJobMode=replace\n\n"
                     "[Service]\nExecStart=\nExecStart=/usr/lib/systemd/systemd-sysroot-fstab-check\n")
    assert gen not in t.entries
    # A systemd without these units: nothing to change. An integritytab keeps its generator.
    t2 = new_tree()
    t2.add_file(gen, b"\x7fELF")
    t2.add_file("etc/integritytab", b"data /dev/sda2 - -\n")
    assert fixups.boot_order(t2) == [] and gen in t2.entries


def test_udevd_starts_without_waiting_for_accounts_and_dev_tmpfiles() -> None:
    t = new_tree()
    d = "usr/lib/systemd/system"
    t.add_file(f"{d}/systemd-udevd.service",
               b"[Unit]\nAfter=systemd-sysusers.service systemd-hwdb-update.service\n"
               b"Before=sysinit.target\n[Service]\nExecStart=/usr/lib/systemd/systemd-udevd\n")
    t.add_file(f"{d}/systemd-tmpfiles-setup-dev-early.service",
               b"[Unit]\nBefore=sysinit.target local-fs-pre.target systemd-udevd.service\n"
               b"Before=shutdown.target\n[Service]\nExecStart=systemd-tmpfiles --prefix=/dev\n")
    t.add_file(f"{d}/systemd-tmpfiles-setup-dev.service",
               b"[Unit]\nAfter=systemd-tmpfiles-setup-dev-early.service\n"
               b"Before=systemd-udevd.service\n[Service]\nExecStart=systemd-tmpfiles\n")
    t.add_file(f"{d}/systemd-sysusers.service",
               b"[Unit]\nAfter=systemd-tmpfiles-setup-dev-early.service\n")
    assert fixups.boot_order(t) == [
        "systemd-udevd.service (without systemd-sysusers.service in After=)",
        "systemd-tmpfiles-setup-dev-early.service (without systemd-udevd.service in Before=)",
        "systemd-tmpfiles-setup-dev.service (without systemd-udevd.service in Before=)"]

    def copy(unit: str) -> list[str]:
        return t.entries[f"etc/systemd/system/{unit}"].data.decode().splitlines()

    # The copies in /etc differ from the stock files only in the one ordering.
    assert copy("systemd-udevd.service")[1:] == [
        "[Unit]", "After=systemd-hwdb-update.service", "Before=sysinit.target", "[Service]",
        "ExecStart=/usr/lib/systemd/systemd-udevd"]
    assert copy("systemd-tmpfiles-setup-dev-early.service")[1:3] == [
        "[Unit]", "Before=sysinit.target local-fs-pre.target"]
    assert not any(line.startswith("Before=") for line in copy("systemd-tmpfiles-setup-dev.service"))
    assert copy("systemd-tmpfiles-setup-dev.service")[0].startswith("# rdforge: ")
    # sysusers keeps its own order: only udevd no longer waits for it.
    assert "etc/systemd/system/systemd-sysusers.service" not in t.entries
