import shutil
import subprocess
from pathlib import Path

import pytest

from rdforge.formats import ldcache


@pytest.mark.skipif(not shutil.which("ldconfig") and not Path("/sbin/ldconfig").exists(),
                    reason="needs glibc's ldconfig")
def test_ldconfig_reads_our_cache(tmp_path: Path) -> None:
    libs = {"libc.so.6": "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "libz.so.1": "/usr/lib/x86_64-linux-gnu/libz.so.1",
            "libkmod.so.2": "/usr/lib/x86_64-linux-gnu/libkmod.so.2",
            "libc.so.10": "/usr/lib/libc.so.10"}
    f = tmp_path / "ld.so.cache"
    f.write_bytes(ldcache.build(libs))
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    out = subprocess.run([ldconfig, "-p", "-C", str(f)], capture_output=True, text=True,
                         check=True).stdout
    assert "4 libs found in cache" in out
    for name, path in libs.items():
        assert f"{name} (libc6,x86-64) => {path}" in out
    # ld.so searches with a binary search over descending keys: check the order we wrote
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == ["libz.so.1", "libkmod.so.2", "libc.so.10", "libc.so.6"]


def test_libcmp_compares_numbers_numerically() -> None:
    assert ldcache._libcmp("libc.so.10", "libc.so.6") > 0
    assert ldcache._libcmp("liba.so", "libb.so") < 0
    assert ldcache._libcmp("libx.so.1", "libx.so.1") == 0
