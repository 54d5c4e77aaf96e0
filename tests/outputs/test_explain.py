"""`rdforge explain`: each answer is checked against what another source says: the package's
own Depends (from the lock), the requester's .note.dlopen (readelf), the image's modules.dep,
the package's file list (dpkg-deb), and a build from the lock explains the same."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rdforge.config import Config
from rdforge.outputs.explain import explain, explain_lines, record
from rdforge.outputs.initrd import build
from rdforge.sources import lock as lockfile
from rdforge.tree.model import FILE, Entry, Tree

pytestmark = pytest.mark.integration


def _explain(image: Path, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdforge.cli", "explain", str(image), path,
                           "--json"], capture_output=True, text=True)


def _reasons(image: Path, path: str) -> list[str]:
    r = _explain(image, path)
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout)["reasons"])


def test_a_library_s_dependency_chain_is_the_packages_own_depends(default_build: Path) -> None:
    reasons = _reasons(default_build, "/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert reasons[0].startswith("from package libc6 ")
    lk = {p.name: p for p in lockfile.read(default_build.with_name("rdforge.lock")).packages}
    steps = reasons[1:]
    assert steps and steps[-1].endswith(": requested")
    for line in steps[:-1]:  # package X: pulled in by Y (Depends: REL)
        m = re.fullmatch(r"package (\S+): pulled in by (\S+) \((Pre-Depends|Depends): (.*)\)", line)
        assert m, line
        name, by, field, rel = m.groups()
        declared = lk[by].pre_depends if field == "Pre-Depends" else lk[by].depends
        assert rel in declared and name in rel, (line, declared)


def test_a_dlopen_library_names_the_binary_whose_note_asks_for_it(default_build: Path,
                                                                  tmp_path: Path) -> None:
    table = json.loads(Path(f"{default_build}.manifest.json").read_text())["explain"]
    name, (by, rule) = next((n, w) for n, w in table["packages"].items() if "dlopen" in w[1])
    assert by == ""
    m = re.fullmatch(r"dlopen\(\) of (\S+) by (\S+)", rule)
    assert m, rule
    soname, binary = m.groups()
    path = next(p for p in table["files"][name] if p.endswith("/" + soname))
    assert _reasons(default_build, "/" + path)[1] == f"package {name}: {rule}"
    out = tmp_path / "binary"
    with out.open("wb") as f:
        subprocess.run([sys.executable, "-m", "rdforge.cli", "inspect", str(default_build),
                        "--file", binary], stdout=f, check=True)
    notes = subprocess.run(["readelf", "-p", ".note.dlopen", str(out)], capture_output=True,
                           text=True, check=True).stdout
    assert f'"{soname}"' in notes


def test_a_module_s_reason_is_a_pattern_or_the_modules_dep_of_another(default_build: Path) -> None:
    manifest = json.loads(Path(f"{default_build}.manifest.json").read_text())
    kver, table = manifest["kernel_version"], manifest["explain"]["modules"]
    dep_text = subprocess.run([sys.executable, "-m", "rdforge.cli", "inspect", str(default_build),
                               "--file", f"/usr/lib/modules/{kver}/modules.dep"],
                              capture_output=True, text=True, check=True).stdout
    deps = {}
    for line in dep_text.splitlines():
        mod, _, rest = line.partition(":")
        deps[Path(mod).name.split(".ko")[0].replace("-", "_")] = \
            {Path(d).name.split(".ko")[0].replace("-", "_") for d in rest.split()}
    name, (by, kind) = next((n, w) for n, w in sorted(table.items()) if w[1] == "depends")
    assert name in deps[by]
    path = next(f"/usr/lib/modules/{kver}/{m}" for m in manifest["modules"]
                if Path(m).name.split(".ko")[0].replace("-", "_") == name)
    reasons = _reasons(default_build, path)
    assert reasons[0].startswith("from the kernel package linux-image-")
    assert reasons[1] == f"module {name}: pulled in by {by} (depends)"
    assert reasons[2].startswith(f"module {by}: ")
    crypt = next(m for m in manifest["modules"] if m.endswith("/dm-crypt.ko"))
    assert _reasons(default_build, f"/usr/lib/modules/{kver}/{crypt}")[1] == \
        "module dm_crypt: generic set: kernel/drivers/md/dm-crypt.*"


def test_a_pruned_path_names_the_pattern_and_the_package_that_shipped_it(default_build: Path) -> None:
    from rdforge.sources.fetch import Fetcher

    reasons = _reasons(default_build, "/usr/share/doc/bash/copyright")
    assert reasons[0].startswith("not in the image: removed by the prune pattern usr/share/doc/*")
    assert reasons[1].startswith("it came from package bash ")
    bash = next(p for p in lockfile.read(default_build.with_name("rdforge.lock")).packages
                if p.name == "bash")
    listing = subprocess.run(["dpkg-deb", "-c", str(Fetcher(True).one(bash))],
                             capture_output=True, text=True, check=True).stdout
    assert "./usr/share/doc/bash/copyright" in listing
    r = _explain(default_build, "/usr/share/doc/no-such-package/README")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "no /usr/share/doc/no-such-package/README in it" in r.stderr


def test_links_and_fix_ups(default_build: Path) -> None:
    r = json.loads(_explain(default_build, "/bin/sh").stdout)
    assert (r["canonical"], r["type"], r["target"]) == ("/usr/bin/sh", "symlink", "bash")
    assert r["reasons"] == ["made by rdforge (fix-up: base layout)"]
    assert _reasons(default_build, "/etc/passwd") == ["made by rdforge (fix-up: users and groups)"]
    assert _reasons(default_build, "/usr/bin/bash")[1:] == ["package bash: requested"]


def test_a_build_from_the_lock_explains_the_same(default_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "initrd.img"
    build(Config(output=str(out), lock=str(default_build.with_name("rdforge.lock")), locked=True))
    a = json.loads(Path(f"{default_build}.manifest.json").read_text())["explain"]
    b = json.loads(Path(f"{out}.manifest.json").read_text())["explain"]
    assert a == b
    assert _reasons(out, "/usr/lib/x86_64-linux-gnu/libc.so.6") == \
        _reasons(default_build, "/usr/lib/x86_64-linux-gnu/libc.so.6")


def test_the_rpm_resolver_s_requires_are_the_chain(rpm_build: Path) -> None:
    table = json.loads(Path(f"{rpm_build}.manifest.json").read_text())["explain"]["packages"]
    name, (by, rule) = next((n, w) for n, w in sorted(table.items()) if w[0])
    assert rule.startswith("requires ") and by in table
    path = next(p for p in json.loads(Path(f"{rpm_build}.manifest.json").read_text())
                ["explain"]["files"][name])
    assert f"package {name}: pulled in by {by} ({rule})" in _reasons(rpm_build, "/" + path)


def test_a_stale_or_missing_manifest_is_said(default_build: Path, tmp_path: Path) -> None:
    img = tmp_path / "initrd.img"
    img.write_bytes(default_build.read_bytes())
    assert _reasons(img, "/usr/bin/bash")[0].startswith(
        "why is not known: no initrd.img.manifest.json beside the image")
    assert "--manifest names one" in _reasons(img, "/usr/bin/bash")[0]
    m = json.loads(Path(f"{default_build}.manifest.json").read_text())
    m["image"]["sha256"] = "0" * 64
    Path(f"{img}.manifest.json").write_text(json.dumps(m))
    assert "describes another image" in _reasons(img, "/usr/bin/bash")[0]


def test_firmware_names_the_modules_that_want_it(tmp_path: Path) -> None:
    """The table's firmware rows, read back (no archive firmware package is small enough to
    build with here): the modules naming the file, then the first one's reason."""
    from rdforge.formats import cpio

    t = Tree()
    t.add("usr/lib/firmware/x/fw.bin", Entry(FILE, 0o644, data=b"fw", package="firmware-x"))
    t.add("usr/lib/modules/6.1/kernel/x.ko", Entry(FILE, 0o644, data=b"", package="kernel"))
    table = record(t, {"firmware-x": ("", "firmware_packages: firmware files included modules "
                                      "name")},
                   {"x": ("", "named in add_modules")}, {"usr/lib/firmware/x/fw.bin": ["x"]}, {})
    buf = io.BytesIO()
    cpio.write(buf, [cpio.CpioEntry(p, e.st_mode, 0, 0, 0, e.data)
                     for p, e in sorted(t.entries.items())])
    img = tmp_path / "fw.img"
    img.write_bytes(buf.getvalue())
    Path(f"{img}.manifest.json").write_text(json.dumps({
        "image": {"sha256": hashlib.sha256(buf.getvalue()).hexdigest()}, "kernel_version": "6.1",
        "packages": [{"name": "firmware-x", "version": "1"}],
        "kernel_package": {"name": "linux-image-6.1", "version": "6.1-1"}, "explain": table}))
    lines = explain_lines(explain(img, "/usr/lib/firmware/x/fw.bin"))
    assert lines == ["/usr/lib/firmware/x/fw.bin: file", "  from package firmware-x 1",
                     "  firmware named by module x", "  module x: named in add_modules",
                     "  package firmware-x: firmware_packages: firmware files included "
                     "modules name"]
    assert explain_lines(explain(img, "/usr/lib/modules/6.1/kernel/x.ko"))[1:] == [
        "  from the kernel package linux-image-6.1 6.1-1", "  module x: named in add_modules"]


def test_a_uki_is_explained_by_its_initrd_s_manifest(default_build: Path, tmp_path: Path) -> None:
    from rdforge.outputs.uki import UkiOptions, build_uki

    uki = tmp_path / "vmlinuz.efi"
    build_uki(UkiOptions(initrd=default_build, output=uki, cmdline="quiet"))
    lib = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    r = subprocess.run([sys.executable, "-m", "rdforge.cli", "explain", str(uki), lib, "--manifest",
                        f"{default_build}.manifest.json", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["reasons"] == _reasons(default_build, lib)


def test_an_excluded_module_is_named_with_the_setting(default_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "initrd.img"
    build(Config(output=str(out), lock=str(tmp_path / "rdforge.lock"), exclude_modules=["xfs"]))
    manifest = json.loads(Path(f"{default_build}.manifest.json").read_text())
    (xfs,) = [m for m in manifest["modules"] if m.endswith("/xfs.ko") or "/xfs.ko." in m]
    path = f"/usr/lib/modules/{manifest['kernel_version']}/{xfs}"
    assert _reasons(default_build, path)[1] == "module xfs: generic set: kernel/fs/xfs/*"
    assert _reasons(out, path) == [
        "not in the image: module xfs: excluded by the exclude_modules setting",
        f"it came from the kernel package {manifest['kernel_package']['name']} "
        f"{manifest['kernel_package']['version']}"]
