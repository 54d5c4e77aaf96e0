#!/bin/sh
# An SSH server for the initrd as a signed system extension: log in to a machine whose root
# file system waits to be unlocked. Usage: examples/sshd/build.sh BASE-INITRD KEY CERT [OUT]
# Give the initrd an authorized key and a root password as credentials:
#   rdforge credential ssh.authorized_keys.root --value-from-file ~/.ssh/id_ed25519.pub
#   openssl passwd -6 > hash && rdforge credential passwd.hashed-password.root --value-from-file hash
# (sshd refuses accounts that are locked, and root is locked without a password credential.)
set -eu
here=$(dirname "$0")
exec rdforge sysext sshd --base "$1" --key "$2" --cert "$3" -o "${4:-sshd.raw}" \
    --packages openssh-server \
    --from-base 'usr/lib/systemd/systemd-networkd*' \
    --file usr/lib/systemd/system/rdforge-sshd.service="$here/rdforge-sshd.service" \
    --file usr/lib/rdforge-sshd/sshd_config="$here/sshd_config" \
    --file usr/lib/systemd/network/20-initrd-dhcp.network="$here/20-initrd-dhcp.network" \
    --enable rdforge-sshd.service
