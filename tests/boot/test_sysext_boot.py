"""Signed system extensions merged by systemd-sysext in the initrd; unsigned, wrongly signed
and tampered ones refused while the boot goes on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rdforge.keys import genkey
from rdforge.outputs.sysext import SysextOptions, build_sysext
from rdforge.vm.boot import BootOptions, BootResult, boot, default_root

pytestmark = [pytest.mark.boot, pytest.mark.integration]
SYSEXT_MARKER = "RDFORGE-SYSEXT-MARKER"

UNIT = """[Unit]
Description=rdforge sysext marker
DefaultDependencies=no

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/rdforge-marker/marker
# Straight to the console: a line that goes through journald can be lost when journald
# is stopped for switch-root before it forwarded the line.
StandardOutput=tty
TTYPath=/dev/console
"""
# Reads its extension-release and runs a program from a package of the extension: both
# exist only when the extension is merged.
SCRIPT = f"""#!/bin/bash
while read -r line; do [[ $line == SYSEXT_ID=* ]] && id=${{line#*=}}; done \\
    < /usr/lib/extension-release.d/extension-release.marker
echo "{SYSEXT_MARKER} id=$id says: $(/usr/bin/hello)"
"""


def _sysext(base: Path, out: Path, keys: tuple[Path, Path] | None) -> Path:
    src = out.parent / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "marker.service").write_text(UNIT)
    (src / "marker").write_text(SCRIPT)
    (src / "marker").chmod(0o755)
    build_sysext(SysextOptions(
        name="marker", base=base, output=out, packages=["hello"],
        files={"usr/lib/systemd/system/rdforge-marker.service": str(src / "marker.service"),
               "usr/lib/rdforge-marker/marker": str(src / "marker")},
        enable=["rdforge-marker.service"], key=keys[0] if keys else None,
        cert=keys[1] if keys else None))
    return out


def _boot(initrd: Path, sysext: Path) -> BootResult:
    opts = BootOptions(initrd=initrd, echo=False, timeout=240, sysexts=(sysext,))
    opts.root_image = default_root(opts)
    return boot(opts)


def test_signed_sysext_is_merged_and_its_unit_runs(trusted_build: Path,
                                                   vendor_keys: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    res = _boot(trusted_build, _sysext(trusted_build, tmp_path / "marker.raw", vendor_keys))
    assert res.ok, res.reason + res.console[-3000:]
    assert re.search(SYSEXT_MARKER + r" id=marker says: Hello, world!", res.console), \
        res.console[-3000:]
    # The merge happened in the initrd, and the unit ran before initrd.target was reached:
    # leaving the initrd (initrd-cleanup) cannot cut it short.
    assert res.console.index(SYSEXT_MARKER) < res.console.index("Reached target initrd.target")
    assert res.console.index(SYSEXT_MARKER) < res.console.index("Switch Root")


@pytest.mark.parametrize("case", ["unsigned", "wrong-key", "tampered"])
def test_untrusted_sysext_is_refused_and_boot_goes_on(trusted_build: Path,
                                                      vendor_keys: tuple[Path, Path],
                                                      tmp_path: Path, case: str) -> None:
    img = tmp_path / "marker.raw"
    if case == "unsigned":
        _sysext(trusted_build, img, None)
    elif case == "wrong-key":
        _sysext(trusted_build, img, genkey("someone else", tmp_path / "other"))
    else:
        _sysext(trusted_build, img, vendor_keys)
        raw = bytearray(img.read_bytes())
        raw[(1 << 20) + 1500] ^= 1  # one bit in the file system's first block
        img.write_bytes(raw)
    res = _boot(trusted_build, img)
    assert res.ok, res.reason + res.console[-3000:]  # the root is still reached
    assert SYSEXT_MARKER not in res.console
    assert re.search(r"Failed to start systemd-sysext\.ser", res.console), res.console[-4000:]
    assert re.search(r"systemd-sysext\[\d+\]: Failed to", res.console), res.console[-4000:]
