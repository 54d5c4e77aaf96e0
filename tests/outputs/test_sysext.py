"""`rdforge sysext`: content, metadata, reproducibility and errors, read back with the file
systems' own tools (fsck.erofs, unsquashfs), sfdisk and systemd-dissect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TrixieTools

from rdforge.errors import KeyMaterialError, SysextError
from rdforge.formats.deb import DebFile
from rdforge.keys import genkey
from rdforge.outputs.sysext import SysextOptions, build_sysext
from rdforge.sources.cache import BlobCache

pytestmark = pytest.mark.integration


def _partition(img: Path, index: int, dest: Path) -> Path:
    parts = json.loads(subprocess.run(["sfdisk", "--json", str(img)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]["partitions"]
    p = parts[index]
    raw = img.read_bytes()
    dest.write_bytes(raw[p["start"] * 512:(p["start"] + p["size"]) * 512])
    return dest


def _hello(base: Path, keys: tuple[Path, Path], out: Path, fs: str = "erofs") -> Path:
    build_sysext(SysextOptions(name="hello", base=base, output=out, packages=["hello"],
                               key=keys[0], cert=keys[1], fs=fs))
    return out


def test_erofs_sysext_holds_the_package_under_usr_and_extension_release(
        default_build: Path, vendor_keys: tuple[Path, Path], tmp_path: Path) -> None:
    img = _hello(default_build, vendor_keys, tmp_path / "hello.raw")
    fs = _partition(img, 0, tmp_path / "fs.erofs")
    root = tmp_path / "x"
    r = subprocess.run(["fsck.erofs", f"--extract={root}", str(fs)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    top = sorted(p.name for p in root.iterdir())
    assert top == ["usr"], top
    hello = root / "usr/bin/hello"
    assert hello.stat().st_mode & 0o111
    m = json.loads((tmp_path / "hello.raw.manifest.json").read_text())
    deb = BlobCache().lookup(m["packages"][0]["sha256"], None)
    assert deb is not None
    with DebFile(deb) as d:
        packaged = next(c for ti, c in d.data() if ti.name.endswith("bin/hello"))
    assert hello.read_bytes() == packaged
    rel = (root / "usr/lib/extension-release.d/extension-release.hello").read_text()
    fields = dict(line.split("=", 1) for line in rel.splitlines())
    assert fields["ID"] == "debian" and fields["VERSION_ID"] == "13"
    assert fields["SYSEXT_SCOPE"] == "initrd" and fields["ARCHITECTURE"] == "x86-64"
    assert [p["name"] for p in m["packages"]] == ["hello"]  # libc6 is in the base already
    assert m["signed"] and m["root_hash"]


def test_squashfs_sysext(default_build: Path, vendor_keys: tuple[Path, Path], tmp_path: Path) -> None:
    img = _hello(default_build, vendor_keys, tmp_path / "hello.raw", fs="squashfs")
    fs = _partition(img, 0, tmp_path / "fs.sqfs")
    listing = subprocess.run(["unsquashfs", "-l", str(fs)], capture_output=True, text=True,
                             check=True).stdout
    assert "squashfs-root/usr/bin/hello" in listing


@pytest.mark.parametrize("fs", ["erofs", "squashfs"])
def test_systemd_dissect_accepts_the_image_as_a_signed_initrd_sysext(
        default_build: Path, vendor_keys: tuple[Path, Path], trixie_systemd: TrixieTools,
        tmp_path: Path, fs: str) -> None:
    img = _hello(default_build, vendor_keys, tmp_path / "hello.raw", fs)
    r = trixie_systemd.run("usr/bin/systemd-dissect", "--json=short", str(img))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["architecture"] == "x86-64"
    assert info["useInitRDSystemExtension"] and not info["useSystemExtension"]
    assert "SYSEXT_SCOPE=initrd" in info["sysextRelease"]
    mounts = {m["designator"]: m for m in info["mounts"]}
    assert set(mounts) == {"root", "root-verity", "root-verity-sig"}
    assert mounts["root"]["fstype"] == fs and mounts["root"]["verity"] == "signed"
    signed_only = "--image-policy=root=signed+absent:=absent"
    r = trixie_systemd.run("usr/bin/systemd-dissect", "--validate", signed_only, str(img))
    assert r.returncode == 0, r.stderr

    unsigned = tmp_path / "unsigned.raw"
    build_sysext(SysextOptions(name="hello", base=default_build, output=unsigned,
                               packages=["hello"], fs=fs))
    r = trixie_systemd.run("usr/bin/systemd-dissect", "--validate", signed_only, str(unsigned))
    assert r.returncode != 0 and "does not match image policy" in r.stderr
    r = trixie_systemd.run("usr/bin/systemd-dissect", "--validate",
                           "--image-policy=root=verity+absent:=absent", str(unsigned))
    assert r.returncode == 0, r.stderr


def test_same_inputs_same_image(default_build: Path, vendor_keys: tuple[Path, Path],
                                tmp_path: Path) -> None:
    a = _hello(default_build, vendor_keys, tmp_path / "a" / "hello.raw")
    env = {"TZ": "Pacific/Kiritimati", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    b = tmp_path / "b" / "hello.raw"
    b.parent.mkdir()
    r = subprocess.run(["sh", "-c", 'umask 077; exec "$@"', "-", sys.executable, "-m",
                        "rdforge.cli", "sysext", "hello", "--base", str(default_build),
                        "--packages", "hello", "--key", str(vendor_keys[0]), "--cert",
                        str(vendor_keys[1]), "-o", str(b), "-q"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes()


def test_errors_are_one_line_and_leave_no_output(default_build: Path, vendor_keys: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "x.raw"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rdforge.cli", "sysext", "x", "--base",
                               str(default_build), "-o", str(out), "-q", *args],
                              capture_output=True, text=True)

    r = cli("--packages", "bash")
    assert r.returncode != 0 and "already in the base image: bash" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli("--packages", "no-such-package-xyz")
    assert r.returncode != 0 and "no-such-package-xyz" in r.stderr
    r = cli("--enable", "nothing.service")
    assert r.returncode != 0 and "nothing.service" in r.stderr
    assert not out.exists()
    other_key, other_cert = genkey("other", tmp_path / "other")
    with pytest.raises(KeyMaterialError, match="does not belong"):
        build_sysext(SysextOptions("x", default_build, out, key=vendor_keys[0], cert=other_cert))
    with pytest.raises(SysextError, match="both --key and --cert"):
        build_sysext(SysextOptions("x", default_build, out, key=vendor_keys[0]))
    with pytest.raises(SysextError, match="no such file"):
        build_sysext(SysextOptions("x", tmp_path / "nothing.img", out))
    assert not out.exists()


def test_inspect_and_diff_read_the_files_of_two_sysexts(default_build: Path,
                                                       vendor_keys: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    """inspect --list/--file of a sysext give the package's files; diff of two sysexts one
    package apart names that package's files, the root hash and the version that changed."""
    a = _hello(default_build, vendor_keys, tmp_path / "a" / "hello.raw")
    build_sysext(SysextOptions(name="hello", base=default_build, output=tmp_path / "b/hello.raw",
                               packages=["hello", "tree"], key=vendor_keys[0],
                               cert=vendor_keys[1], version="2"))
    b = tmp_path / "b/hello.raw"

    def rdforge(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "rdforge.cli", *args], capture_output=True)

    r = rdforge("inspect", "--list", "--json", str(a))
    assert r.returncode == 0, r.stderr
    paths = {row["path"] for row in json.loads(r.stdout)}
    m = json.loads((tmp_path / "a/hello.raw.manifest.json").read_text())
    deb = BlobCache().lookup(m["packages"][0]["sha256"], None)
    assert deb is not None
    with DebFile(deb) as d:
        packaged = {ti.name.lstrip(".") for ti, _c in d.data() if ti.isfile()
                    and ti.name.startswith("./usr/bin/")}
    assert packaged and packaged <= paths
    with DebFile(deb) as d:
        hello = next(c for ti, c in d.data() if ti.name == "./usr/bin/hello")
    assert rdforge("inspect", str(a), "--file", "/usr/bin/hello").stdout == hello
    d = json.loads(rdforge("diff", str(a), str(b), "--json").stdout)
    assert "/usr/bin/tree" in d["files"]["added"] and not d["files"]["removed"]
    assert all("/tree" in p or "extension-release" in p for p in d["files"]["added"]
               + list(d["files"]["changed"])), d["files"]
    ext = d["extension"]
    assert ext["root_hash"][0] == m["root_hash"] and ext["root_hash"][1] != m["root_hash"]
    assert ext["extension_release"] == {"SYSEXT_VERSION_ID": [None, "2"]}
    text = rdforge("diff", str(a), str(b)).stdout.decode()
    assert "+ /usr/bin/tree" in text and "~ extension-release SYSEXT_VERSION_ID: (unset) -> 2" in text
