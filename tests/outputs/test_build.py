"""`rdforge build` against the real trixie archive (packages cached after the first run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.formats import compress, cpio

pytestmark = pytest.mark.integration


def _rdforge(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})})


def test_gnu_cpio_lists_the_default_image(default_build: Path) -> None:
    raw = subprocess.run(["zstd", "-dc", str(default_build)], capture_output=True,
                         check=True).stdout
    names = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True,
                           check=True).stdout.decode().split()
    for must in ("init", "usr/lib/systemd/systemd", "etc/initrd-release", "etc/ld.so.cache",
                 "usr/lib/x86_64-linux-gnu/liblzma.so.5", "usr/lib/x86_64-linux-gnu/libkmod.so.2",
                 "dev/console", "etc/passwd"):
        assert must in names, must
    assert any(n.endswith("/virtio_blk.ko") for n in names)
    assert any(n.endswith("/modules.dep.bin") for n in names)
    # Modules every common boot loads are plain; rarely loaded ones stay xz as shipped, and
    # depmod's index names them so (the xfs and btrfs boot tests load them).
    assert any(n.endswith("/fs/ext4/ext4.ko") for n in names)
    for rare in ("/fs/xfs/xfs.ko.xz", "/fs/btrfs/btrfs.ko.xz"):
        assert any(n.endswith(rare) for n in names), rare
    assert not any(n.endswith("/xfs.ko") for n in names)
    assert not any(n.startswith("usr/share/doc/") or n.startswith("usr/share/man/") for n in names)


def test_static_check_passes_and_manifest_lists_packages(default_build: Path) -> None:
    r = _rdforge("inspect", "--check", "--json", str(default_build))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["check"]["problems"] == []
    m = json.loads(default_build.with_name("initrd.img.manifest.json").read_text())
    names = {p["name"] for p in m["packages"]}
    assert {"systemd", "udev", "kmod", "liblzma5", "libc6"} <= names
    assert all(len(p["sha256"]) == 64 for p in m["packages"])
    assert m["pruned"]["usr/share/doc/*"]["bytes"] > 1_000_000
    assert len(m["modules"]) > 200
    # The modules as the image holds them (decompressed), so manifest and image compare.
    in_image = {e.name for e in cpio.read(compress.decompress(default_build.read_bytes()))[0]}
    assert all(f"usr/lib/modules/{m['kernel_version']}/{p}" in in_image for p in m["modules"])


def test_image_is_small(default_build: Path) -> None:
    assert default_build.stat().st_size < 20_000_000


def test_reproducible_across_directories_tz_umask_locale(tmp_path: Path,
                                                          default_build: Path) -> None:
    lock = default_build.with_name("rdforge.lock")
    outs = []
    for i, (tz, umask, lang) in enumerate((("UTC", "022", "C.UTF-8"),
                                           ("Asia/Tokyo", "077", "POSIX"))):
        d = tmp_path / f"dir{i}" / "nested"
        d.mkdir(parents=True)
        out = d / "initrd.img"
        # Downloads are shared; unpacking and compression run afresh in each build (their
        # caches would otherwise hand the second build the first one's results).
        from rdforge.sources.cache import cache_root

        cache = tmp_path / f"cache{i}"
        cache.mkdir()
        for sub in ("blobs", "dists", "index", "kernels"):
            if (cache_root() / sub).exists():
                (cache / sub).symlink_to(cache_root() / sub)
        cmd = (f"umask {umask}; exec {sys.executable} -m rdforge.cli build --locked --offline "
               f"--lock {lock} -o {out} -q")
        r = subprocess.run(["bash", "-c", cmd], cwd=d, capture_output=True, text=True,
                           env={**os.environ, "TZ": tz, "LANG": lang, "LC_ALL": lang,
                                "HOSTNAME": f"host{i}", "RDFORGE_CACHE": str(cache)})
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] == default_build.read_bytes()


def test_unknown_package_is_one_line_error_and_keeps_old_image(tmp_path: Path) -> None:
    out = tmp_path / "initrd.img"
    out.write_bytes(b"previous image")
    r = _rdforge("build", "--add-packages", "no-such-package-xyz", "-o", str(out),
                 "--lock", str(tmp_path / "l"), "-q")
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0
    assert "no-such-package-xyz" in r.stderr
    assert out.read_bytes() == b"previous image"
    assert [p.name for p in tmp_path.iterdir()] == ["initrd.img"]


def test_unknown_kernel_version_names_it(tmp_path: Path) -> None:
    r = _rdforge("build", "--kernel-version", "9.9.9-nope", "-o", str(tmp_path / "i"),
                 "--lock", str(tmp_path / "l"), "-q")
    assert r.returncode != 0
    assert "unknown kernel version '9.9.9-nope'" in r.stderr


def test_bad_signature_is_refused(tmp_path: Path) -> None:
    # A keyring that does not hold the archive's signing key must fail verification.
    wrong = tmp_path / "wrong.gpg"
    wrong.write_bytes(Path("/usr/share/keyrings/debian-archive-bullseye-stable.gpg").read_bytes())
    r = _rdforge("build", "--keyring", str(wrong), "-o", str(tmp_path / "i"),
                 "--lock", str(tmp_path / "l"), "-q")
    assert r.returncode != 0
    assert "bad or missing signature" in r.stderr
    assert not (tmp_path / "i").exists()


def test_malformed_toml_and_unknown_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("compression = \n")
    r = _rdforge("build", "-c", str(bad))
    assert r.returncode == 1 and "malformed TOML" in r.stderr
    bad.write_text("compresion = 'xz'\n")
    r = _rdforge("build", "-c", str(bad))
    assert r.returncode == 1 and "unknown key 'compresion'" in r.stderr


def test_image_decompresses_into_one_cpio(default_build: Path) -> None:
    raw = compress.decompress(default_build.read_bytes())
    entries, end = cpio.read(raw)
    assert entries[0].name == "bin"
    assert raw[end:].strip(b"\0") == b""


def test_firmware_from_enabled_firmware_package(tmp_path: Path) -> None:
    out = tmp_path / "fw.img"
    r = _rdforge("build", "-q", "-o", str(out), "--lock", str(tmp_path / "l"), "--components",
                 "main", "non-free-firmware", "--firmware-packages", "firmware-misc-nonfree")
    assert r.returncode == 0, r.stderr
    m = json.loads(out.with_name("fw.img.manifest.json").read_text())
    assert "firmware-misc-nonfree" in {p["name"] for p in m["packages"]}
    names = [e.name for e in cpio.read(compress.decompress(out.read_bytes()))[0]]
    fw = [n for n in names if n.startswith("usr/lib/firmware/")]
    assert fw, "no firmware file was taken"
    # what is still missing is listed, not silently dropped
    assert all(not n.startswith("usr/lib/firmware/" + x) for x in m["firmware_missing"] for n in fw)


def test_default_build_lists_missing_firmware(default_build: Path) -> None:
    m = json.loads(default_build.with_name("initrd.img.manifest.json").read_text())
    assert "renesas_usb_fw.mem" in m["firmware_missing"]  # named by xhci-pci-renesas


def test_offline_build_from_a_local_deb_directory(tmp_path: Path, default_build: Path) -> None:
    from rdforge.sources import lock as lockfile
    from rdforge.sources.cache import BlobCache

    lk = lockfile.read(default_build.with_name("rdforge.lock"))
    debs = tmp_path / "debs"
    debs.mkdir()
    blobs = BlobCache()
    for p in lk.packages + ([lk.kernel] if lk.kernel else []):
        hit = blobs.lookup(p.sha256, p.size, verify=False)
        assert hit is not None
        (debs / f"{p.name}_{p.version.replace(':', '%3a')}_{p.arch}.deb").symlink_to(hit)
    out = tmp_path / "initrd.img"
    r = _rdforge("build", "--deb-dir", str(debs), "--offline", "-o", str(out), "--lock",
                 str(tmp_path / "l"), "-q", env={"http_proxy": "http://127.0.0.1:9"})
    assert r.returncode == 0, r.stderr
    # the same packages give the same image as the networked build
    assert out.read_bytes() == default_build.read_bytes()
