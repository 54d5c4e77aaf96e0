"""A credential bound to a TPM (swtpm): made by systemd-creds inside the initrd on a first
boot, it unlocks the emergency shell on the same TPM and fails to decrypt on a fresh one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.outputs.sysext import SysextOptions, build_sysext
from rdforge.vm.boot import BootOptions, BootResult, boot, default_root

pytestmark = [pytest.mark.boot, pytest.mark.integration]
PASSWORD = "tpm-bound-secret"
MAKE_CRED = """#!/bin/bash
# A software TPM on a loaded machine can be slow to answer: try a few times.
for attempt in 1 2 3; do
    c=$(systemd-creds encrypt --with-key=tpm2 --name=passwd.hashed-password.root \\
          "$CREDENTIALS_DIRECTORY/rdforge.tpm-input" - 2>/run/rdforge-tpm.err) && break
    echo "rdforge-tpm: attempt $attempt failed: $(</run/rdforge-tpm.err)" > /dev/console
    c=""
    sleep 3
done
[ -n "$c" ] || { echo "TPMCRED-FAILED" > /dev/console; exit 1; }
echo "TPMCRED-BEGIN ${c//$'\\n'/} TPMCRED-END" > /dev/console
"""
UNIT = """[Unit]
DefaultDependencies=no
After=systemd-tmpfiles-setup.service tpm2.target
[Service]
Type=oneshot
RemainAfterExit=yes
ImportCredential=rdforge.tpm-input
ExecStart=/usr/lib/rdforge-tpm/make-cred
"""


def _boot(initrd: Path, state: Path, **kw: object) -> BootResult:
    kw.setdefault("stop_on_fail", False)
    opts = BootOptions(initrd=initrd, echo=False, timeout=240, tpm_state=state,
                       **kw)  # type: ignore[arg-type]
    opts.root_image = default_root(opts)
    return boot(opts)


def test_tpm_bound_credential(trusted_build: Path, vendor_keys: tuple[Path, Path],
                              tmp_path: Path) -> None:
    (tmp_path / "make-cred").write_text(MAKE_CRED)
    (tmp_path / "make-cred").chmod(0o755)
    (tmp_path / "tpmcred.service").write_text(UNIT)
    maker = tmp_path / "tpmcred.raw"
    build_sysext(SysextOptions(
        name="tpmcred", base=trusted_build, output=maker,
        files={"usr/lib/rdforge-tpm/make-cred": str(tmp_path / "make-cred"),
               "usr/lib/systemd/system/tpmcred.service": str(tmp_path / "tpmcred.service")},
        enable=["tpmcred.service"], key=vendor_keys[0], cert=vendor_keys[1]))
    pw_hash = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True,
                             check=True).stdout.strip()
    state = tmp_path / "tpm"
    # 1. Seal the password hash to this TPM, inside the initrd, with systemd-creds (the root
    #    does not appear: the initrd waits instead of racing to switch root).
    res = _boot(trusted_build, state, sysexts=(maker,), expect="TPMCRED-END", stop_on_fail=True,
                expect_fail=("TPMCRED-FAILED",), smbios_credentials=(f"rdforge.tpm-input={pw_hash}",),
                root_arg="root=LABEL=does-not-exist", append="systemd.default_device_timeout_sec=200")
    m = re.search(r"TPMCRED-BEGIN (\S+) TPMCRED-END", res.console)
    assert res.ok and m, res.reason + res.console[-3000:]
    cred = tmp_path / "passwd.hashed-password.root.cred"
    cred.write_text(m.group(1) + "\n")
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "credential", "--show", str(cred)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "tpm2" in r.stderr  # not readable off the machine
    emergency = dict(root_arg="root=LABEL=does-not-exist", credentials=(cred,),
                     append="systemd.default_device_timeout_sec=15")
    # 2. Same TPM: the initrd decrypts it and the emergency shell opens with the password.
    res = _boot(trusted_build, state, expect="RDFORGE-42", **emergency,
                console_input=(("password for system maintenance", PASSWORD + "\n"),
                               ("# ", "echo RDFORGE-$((6*7))\n")))
    assert res.ok, res.reason + res.console[-3000:]
    # 3. A fresh TPM cannot decrypt it: the boot says so and root stays locked.
    shutil.rmtree(tmp_path / "fresh", ignore_errors=True)
    res = _boot(trusted_build, tmp_path / "fresh", expect="the root account is locked", **emergency)
    assert res.ok, res.reason + res.console[-3000:]
    assert "Failed to start rdforge-root-pass" in res.console, res.console[-3000:]
