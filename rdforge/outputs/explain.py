"""`rdforge explain IMAGE PATH`: why a path is in an image, or why it is not.

A build records its reasons in the manifest beside the image (its "explain" table): which
package or fix-up put each path there, why each package was taken (the dependency chain as the
resolver walked it, a dlopen() note, the firmware or microcode settings), why each kernel
module was taken (the generic set's pattern, the host's own devices, another module's
dependency), which modules name each firmware file, and for each path it left out the rule
that removed it (a prune pattern, an unused library, a dangling link). Explaining reads that
table and the image itself; it never needs the archive."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rdforge.errors import FormatError
from rdforge.outputs.inspect import initrd_bytes, parse_initrd
from rdforge.tree.model import DIR, SYMLINK, Tree

Why = dict[str, tuple[str, str]]  # name -> (pulled in by, or ""; the rule)


def record(tree: Tree, packages: Why, modules: Why, firmware: dict[str, list[str]],
           left_out: dict[str, tuple[str, str]]) -> dict[str, object]:
    """The manifest's explain table for a finished tree."""
    files: dict[str, list[str]] = {}
    for path, e in sorted(tree.entries.items()):
        if e.kind != DIR:
            files.setdefault(e.package or "rdforge", []).append(path)
    return {"packages": {k: list(v) for k, v in sorted(packages.items())},
            "modules": {k: list(v) for k, v in sorted(modules.items())},
            "firmware": dict(sorted(firmware.items())),
            "files": dict(sorted(files.items())),
            "left_out": {k: list(v) for k, v in sorted(left_out.items())}}


def _chain(table: object, name: str, what: str) -> list[str]:
    """name's reason, then its puller's, up to one asked for (a loop or gap ends it)."""
    lines: list[str] = []
    seen: set[str] = set()
    while isinstance(table, dict) and name not in seen:
        seen.add(name)
        why = table.get(name)
        if not isinstance(why, list) or len(why) != 2:
            lines.append(f"{what} {name}: no reason recorded")
            break
        by, rule = str(why[0]), str(why[1])
        lines.append(f"{what} {name}: " + (f"pulled in by {by} ({rule})" if by else rule))
        if not by:
            break
        name = by
    return lines


def _manifest(image: Path, initrd: bytes, given: Path | None = None
              ) -> tuple[dict[str, object] | None, str]:
    """The manifest given, else the one beside image, if it is this image's (of a UKI: of
    the initrd inside); else None and why not."""
    mpath = given or Path(f"{image}.manifest.json")
    try:
        data = json.loads(mpath.read_text("utf-8"))
    except FileNotFoundError:
        return None, (f"no manifest {mpath}" if given else
                      f"no {mpath.name} beside the image (--manifest names one)")
    except (OSError, ValueError) as err:
        return None, f"{mpath.name} is unreadable ({err})"
    if not isinstance(data, dict):
        return None, f"{mpath.name} is not a manifest"
    img = data.get("image")
    sha = img.get("sha256") if isinstance(img, dict) else None
    if sha != hashlib.sha256(initrd).hexdigest():
        return None, f"{mpath.name} describes another image (its sha256 differs)"
    if not isinstance(data.get("explain"), dict):
        return None, f"{mpath.name} has no explain table (written by an older rdforge)"
    return data, ""


def explain(image: Path, path: str, manifest: Path | None = None) -> dict[str, object]:
    """What image and its manifest say about path (absolute, in the image). A UKI's answer
    comes from its initrd's manifest (--manifest), which must describe the initrd inside."""
    buf = initrd_bytes(image)
    tree, _segs = parse_initrd(buf, image)
    want = "/".join(p for p in path.split("/") if p not in ("", "."))
    if not want:
        raise FormatError(f"{path!r}: name a path inside the image")
    real = tree.resolve(want, follow=False)
    out: dict[str, object] = {"image": str(image), "path": "/" + want}
    if real != want:
        out["canonical"] = "/" + real
    m, why_not = _manifest(image, buf, manifest)
    e = tree.entries.get(real)
    if e is not None:
        out["in_image"] = True
        out["type"] = e.kind
        if e.kind == SYMLINK:
            out["target"] = e.target
    else:
        out["in_image"] = False
    if m is None:
        out["reasons"] = [f"why is not known: {why_not}"]
        if e is None:
            raise FormatError(f"{image}: no /{want} in it, and {why_not}")
        return out
    table = m["explain"]
    assert isinstance(table, dict)
    out["reasons"] = _present(real, tree, m, table) if e is not None \
        else _absent(real, image, m, table)
    return out


def _owner(table: dict[str, object], real: str) -> str | None:
    files = table.get("files")
    if isinstance(files, dict):
        for maker, paths in files.items():
            if isinstance(paths, list) and real in paths:
                return str(maker)
    return None


def _versions(m: dict[str, object]) -> dict[str, str]:
    rows = m.get("packages")
    return {str(r.get("name")): str(r.get("version")) for r in rows
            if isinstance(r, dict)} if isinstance(rows, list) else {}


def _present(real: str, tree: Tree, m: dict[str, object],
             table: dict[str, object]) -> list[str]:
    e = tree.entries[real]
    if e.kind == DIR:
        prefix = real + "/"
        files = table.get("files")
        makers = sorted(str(k) for k, v in files.items() if isinstance(v, list) and
                        any(str(p).startswith(prefix) for p in v)) if isinstance(files, dict) else []
        more = f" and {len(makers) - 8} more" if len(makers) > 8 else ""
        return [f"a directory; what it holds comes from {len(makers)} packages or fix-ups: "
                f"{', '.join(makers[:8]) or 'nothing'}{more}"]
    maker = _owner(table, real)
    if maker is None:
        micro = m.get("microcode")
        if real.startswith("kernel/x86/microcode/") and isinstance(micro, dict):
            pk = micro.get("packages")
            names = ", ".join(f"{k} {v}" for k, v in pk.items()) if isinstance(pk, dict) else ""
            return [f"early microcode (microcode = {micro.get('mode')}), from {names}"]
        return ["no package or fix-up is recorded for it (added to the image after its build?)"]
    lines: list[str] = []
    kernel = m.get("kernel_package")
    if maker == "kernel" and isinstance(kernel, dict):
        lines.append(f"from the kernel package {kernel.get('name')} {kernel.get('version')}")
        mod = _module_name(real, str(m.get("kernel_version", "")))
        if mod:
            lines += _chain(table.get("modules"), mod, "module")
        return lines
    version = _versions(m).get(maker)
    if version is None:
        what = {"config: files": "a file the configuration adds (the files setting)",
                "config: trust": "a certificate the configuration adds (the trust setting)"}
        lines.append(what.get(maker, f"made by rdforge ({maker})"))
        return lines
    lines.append(f"from package {maker} {version}")
    fw = table.get("firmware")
    if isinstance(fw, dict) and isinstance(fw.get(real), list):
        mods = [str(x) for x in fw[real]]
        lines.append(f"firmware named by module{'s' if len(mods) > 1 else ''} {', '.join(mods)}")
        if mods:
            lines += _chain(table.get("modules"), mods[0], "module")
    lines += _chain(table.get("packages"), maker, "package")
    return lines


def _module_name(real: str, kver: str) -> str | None:
    base = f"usr/lib/modules/{kver}/"
    if not real.startswith(base) or ".ko" not in real.rsplit("/", 1)[-1]:
        return None
    from rdforge.tree.kmods import modname

    return modname(real)


def _absent(real: str, image: Path, m: dict[str, object], table: dict[str, object]) -> list[str]:
    gone = table.get("left_out")
    rec = gone.get(real) if isinstance(gone, dict) else None
    if not isinstance(rec, list) or len(rec) != 2:
        raise FormatError(f"{image}: no /{real} in it, and no package of its build shipped it")
    rule, package = str(rec[0]), str(rec[1])
    lines = [f"not in the image: {rule}"]
    kernel = m.get("kernel_package")
    if package == "kernel" and isinstance(kernel, dict):
        lines.append(f"it came from the kernel package {kernel.get('name')} {kernel.get('version')}")
    elif package in _versions(m):
        lines.append(f"it came from package {package} {_versions(m)[package]}")
    elif package:
        lines.append(f"it came from package {package}")
    return lines


def explain_lines(d: dict[str, object]) -> list[str]:
    head = str(d["path"])
    if "canonical" in d:
        head += f" (is {d['canonical']} through the image's links)"
    if d.get("in_image"):
        head += f": {d['type']}" + (f" -> {d['target']}" if "target" in d else "")
    reasons = d.get("reasons")
    return [head] + [f"  {r}" for r in reasons] if isinstance(reasons, list) else [head]
