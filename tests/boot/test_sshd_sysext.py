"""The flagship sysext: an SSH server added to a vendor-signed initrd; the test logs in over
qemu's user network and runs a command in the initrd."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from rdforge.formats import creds
from rdforge.vm.boot import BootOptions, boot, default_root

pytestmark = [pytest.mark.boot, pytest.mark.integration]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ssh_into_the_initrd_through_a_signed_sysext(trusted_build: Path,
                                                     vendor_keys: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    img = tmp_path / "sshd.raw"
    r = subprocess.run([str(EXAMPLE / "build.sh"), str(trusted_build), str(vendor_keys[0]),
                        str(vendor_keys[1]), str(img)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    auth = tmp_path / "ssh.authorized_keys.root.cred"
    auth.write_bytes(creds.armor(creds.encrypt("ssh.authorized_keys.root",
                                               key.with_suffix(".pub").read_bytes())))
    pw_hash = subprocess.run(["openssl", "passwd", "-6", "unused-password"], capture_output=True,
                             text=True, check=True).stdout.strip()
    pw = tmp_path / "passwd.hashed-password.root.cred"
    pw.write_bytes(creds.armor(creds.encrypt("passwd.hashed-password.root", pw_hash.encode())))
    port = _free_port()
    seen: dict[str, str] = {}

    def login() -> tuple[bool, str]:
        for _attempt in range(8):
            res = subprocess.run(
                ["ssh", "-p", str(port), "-i", str(key), "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=60",
                 "-o", "BatchMode=yes", "root@127.0.0.1",
                 '. /etc/initrd-release; echo "in $VARIANT_ID: $((6*7))"'],
                capture_output=True, text=True, timeout=240)
            seen["out"], seen["err"] = res.stdout, res.stderr
            if res.returncode == 0:
                return "in rdforge-initrd: 42" in res.stdout, res.stdout.strip()
            time.sleep(3)
        return False, f"ssh failed: {res.stderr.strip()[-500:]}"

    # The root never appears, so the initrd waits (as it would for a passphrase).
    opts = BootOptions(initrd=trusted_build, echo=False, timeout=420, sysexts=(img,),
                       credentials=(auth, pw), forwards=((port, 22),),
                       root_arg="root=LABEL=does-not-exist",
                       append="systemd.default_device_timeout_sec=400",
                       expect="rdforge-sshd: listening on port 22", while_running=login)
    opts.root_image = default_root(opts)
    res = boot(opts)
    assert res.ok, f"{res.reason}\n{seen}\n{res.console[-3000:]}"
