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
    assert "rdforge-root-account.service" in t.entries[
        "usr/lib/systemd/system/sysinit.target.wants/rdforge-root-account.service"].target
