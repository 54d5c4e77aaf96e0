"""rdforge's own Debian packages: dpkg-buildpackage builds them reproducibly (another path,
umask, time zone, locale and three days later give the same bytes), with the man page and
completion generated from the parser, and the installed tool runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CLEAN_PATH, build_debs, source_checkout

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def debs(rdforge_debs: dict[str, Path]) -> dict[str, bytes]:
    assert set(rdforge_debs) == {"rdforge_0.1.0_all.deb", "rdforge-initramfs_0.1.0_all.deb"}
    return {name: p.read_bytes() for name, p in rdforge_debs.items()}


def test_the_packages_build_reproducibly(debs: dict[str, bytes], tmp_path: Path) -> None:
    faketime = shutil.which("faketime", path=CLEAN_PATH)
    wrap = (faketime, "-f", "+3d") if faketime else ()
    src = source_checkout(tmp_path / "elsewhere/deeper/rdforge-src")
    os.chmod(src, 0o700)
    built = build_debs(src, *wrap, TZ="Asia/Tokyo", LANG="C.UTF-8", LC_ALL="fr_FR.UTF-8")
    again = {name: p.read_bytes() for name, p in built.items()}
    for name, data in debs.items():
        if again[name] != data:
            (tmp_path / "first.deb").write_bytes(data)
            (tmp_path / "again.deb").write_bytes(again[name])
            tool = shutil.which("diffoscope", path=CLEAN_PATH)
            why = subprocess.run([tool, str(tmp_path / "first.deb"), str(tmp_path / "again.deb")],
                                 capture_output=True, text=True).stdout[:3000] if tool else ""
            pytest.fail(f"{name} differs between the two builds\n{why}")


def _fields(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                          check=True).stdout


def test_what_the_packages_hold_and_declare(debs: dict[str, bytes], tmp_path: Path) -> None:
    for name, data in debs.items():
        (tmp_path / name).write_bytes(data)
    tool = _fields(tmp_path / "rdforge_0.1.0_all.deb")
    for dep in ("python3-zstandard", "python3-cryptography", "python3-lz4", "gpgv", "kmod"):
        assert dep in tool.split("Depends:", 1)[1].splitlines()[0]
    assert "qemu-system-x86" in tool.split("Suggests:", 1)[1].splitlines()[0]  # harness: optional
    hooks = _fields(tmp_path / "rdforge-initramfs_0.1.0_all.deb")
    assert "Provides: linux-initramfs-tool" in hooks and "Conflicts: linux-initramfs-tool" in hooks
    root = tmp_path / "root"
    for name in debs:
        subprocess.run(["dpkg-deb", "-x", str(tmp_path / name), str(root)], check=True)
    for path in ("usr/bin/rdforge", "usr/share/man/man1/rdforge.1.gz",
                 "usr/share/bash-completion/completions/rdforge",
                 "etc/kernel/postinst.d/rdforge", "etc/kernel/postrm.d/rdforge",
                 "usr/lib/python3/dist-packages/rdforge/profiles/fedora.toml"):
        assert (root / path).is_file(), path
    assert os.access(root / "etc/kernel/postinst.d/rdforge", os.X_OK)
    # the man page is groff-clean and documents every setting of the table
    man = subprocess.run(["zcat", str(root / "usr/share/man/man1/rdforge.1.gz")],
                         capture_output=True, text=True, check=True).stdout
    groff = subprocess.run(["groff", "-man", "-ww", "-z"], input=man, capture_output=True, text=True)
    assert groff.returncode == 0 and groff.stderr == "", groff.stderr
    from rdforge.config import SETTINGS

    for s in SETTINGS:
        assert f"\\fB{s.key.replace('-', chr(92) + '-')}\\fR" in man, s.key
    assert subprocess.run(["bash", "-n", str(root / "usr/share/bash-completion/completions/rdforge")]
                          ).returncode == 0
    comp = subprocess.run(["bash", "-c", f"source {root}/usr/share/bash-completion/completions/"
                           "rdforge; COMP_WORDS=(rdforge build --modules-d); COMP_CWORD=2; "
                           "_rdforge; echo ${COMPREPLY[@]}"], capture_output=True, text=True)
    assert comp.stdout.split() == ["--modules-dir"]
    # the packaged tool runs with Debian's python3
    v = subprocess.run(["/usr/bin/python3", str(root / "usr/bin/rdforge"), "--version"],
                       capture_output=True, text=True, cwd="/",
                       env={"PATH": CLEAN_PATH, "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")})
    assert v.returncode == 0 and v.stdout.strip() == "rdforge 0.1.0", v.stderr


def test_lintian_finds_no_error_or_warning_and_the_trigger_is_declared(
        rdforge_debs: dict[str, Path]) -> None:
    """Debian's own checks of both packages (lintian from the host's archive), and the file
    trigger that remakes initrds after a systemd upgrade."""
    debs = [str(p) for p in sorted(rdforge_debs.values())]
    r = subprocess.run(["lintian", "--fail-on", "error,warning", "--tag-display-limit", "0",
                        *debs], capture_output=True, text=True, env={"PATH": CLEAN_PATH})
    tags = [line for line in r.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert r.returncode == 0 and not tags, r.stdout + r.stderr
    triggers = subprocess.run(["dpkg-deb", "-I", str(rdforge_debs["rdforge-initramfs_0.1.0_all.deb"]),
                               "triggers"], capture_output=True, text=True, check=True).stdout
    assert "interest-noawait /usr/lib/systemd/systemd" in triggers.splitlines()
