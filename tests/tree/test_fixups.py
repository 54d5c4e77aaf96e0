"""Fix-ups that replace maintainer scripts: accounts from sysusers.d."""

from __future__ import annotations

from rdforge.tree import fixups
from rdforge.tree.unpack import new_tree


def test_sysusers_lines_become_locked_accounts_root_is_left_to_boot() -> None:
    t = new_tree()
    t.add_file("usr/lib/sysusers.d/basic.conf",
               b'g root 0 -\nu root 0 - /root /bin/bash\ng tty 5 -\nu nobody 65534:65534 - /nonexistent\n')
    t.add_file("usr/lib/sysusers.d/systemd-network.conf",
               b'u! systemd-network - "systemd Network Management"\n')
    t.add_file("usr/lib/sysusers.d/other.conf", b'u svc -\nm svc tty\n')
    t.add_file("usr/lib/systemd/system/systemd-sysusers.service", b"[Unit]\n")
    t.add_file("usr/bin/systemd-sysusers", b"\x7fELF")
    t.add_file("usr/lib/systemd/system/systemd-tmpfiles-setup-dev.service", b"[Unit]\n")
    fixups.users_and_groups(t)
    passwd = t.entries["etc/passwd"].data.decode().splitlines()
    names = [line.split(":")[0] for line in passwd]
    assert "root" not in names  # created at boot, from a credential or locked
    assert "systemd-network" in names and "svc" in names and "nobody" in names
    net = next(line for line in passwd if line.startswith("systemd-network:")).split(":")
    assert int(net[2]) < 1000 and net[4] == "systemd Network Management"
    shadow = t.entries["etc/shadow"].data.decode().splitlines()
    assert all(line.split(":")[1] == "!*" for line in shadow)
    group = t.entries["etc/group"].data.decode()
    assert "tty:x:5:svc" in group and "root:x:0:" in group
    wants = "usr/lib/systemd/system/sysinit.target.wants"
    for unit in ("rdforge-root-password.service", "rdforge-root-account.service"):
        assert unit in t.entries[f"{wants}/{unit}"].target
    # Root is made beside udevd, not before it: systemd-sysusers.service keeps its stock
    # condition (nothing else is left for it to make) and the root units do not order
    # themselves before udevd.
    assert "usr/lib/systemd/system/systemd-sysusers.service.d/10-rdforge.conf" not in t.entries
    unit = t.entries["usr/lib/systemd/system/rdforge-root-password.service"].data.decode()
    assert "ImportCredential=passwd.*" in unit and "udevd" not in unit
    assert "Before=sysinit.target systemd-tmpfiles-setup.service emergency.service" in unit
    # With every account made at build time, the second pass over /dev has nothing to add
    # unless a credential brings more accounts.
    dropin = t.entries["usr/lib/systemd/system/systemd-tmpfiles-setup-dev.service.d/10-rdforge.conf"]
    assert dropin.data == b"[Unit]\nConditionCredential=sysusers.extra\n"


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
    gone = fixups.boot_path(t)
    assert gone == ["local-fs.target.wants/tmp.mount", "sockets.target.wants/systemd-hostnamed.socket",
                    "sysinit.target.wants/dev-hugepages.mount"]
    assert f"{d}/sockets.target.wants/systemd-journald.socket" in t.entries
    assert f"{d}/dev-hugepages.mount" in t.entries  # the unit stays, only its link goes
