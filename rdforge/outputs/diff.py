"""`rdforge diff A B`: what changed between two initrds (or the initrds inside two UKIs, or
two system extensions: their files, root hash, signer and extension-release):
packages and their versions and sizes (from the manifests the builds wrote beside them), files
added, removed and changed (content hash, mode, owner, size, link target), kernel modules and
firmware, and for UKIs the PE sections. The quickest answer to "what changed since the last
kernel update?"."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rdforge.outputs.inspect import is_ddi, read_tree
from rdforge.tree.model import FILE, SYMLINK, Entry, Tree


def _manifest(image: Path) -> dict[str, object] | None:
    try:
        data = json.loads(Path(f"{image}.manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _packages(image: Path) -> dict[str, dict[str, object]] | None:
    m = _manifest(image)
    rows = m.get("packages") if m else None
    if not isinstance(rows, list):
        return None
    return {str(r["name"]): r for r in rows if isinstance(r, dict) and "name" in r}


def _facts(e: Entry) -> dict[str, object]:
    f: dict[str, object] = {"type": e.kind, "mode": f"{e.mode:04o}", "owner": f"{e.uid}:{e.gid}"}
    if e.kind == FILE:
        f["size"] = len(e.data)
        f["sha256"] = hashlib.sha256(e.data).hexdigest()
    elif e.kind == SYMLINK:
        f["target"] = e.target
    return f


def _files(a: Tree, b: Tree) -> dict[str, object]:
    added = sorted(p for p in b.entries if p not in a.entries)
    removed = sorted(p for p in a.entries if p not in b.entries)
    changed: dict[str, dict[str, list[object]]] = {}
    for p in sorted(set(a.entries) & set(b.entries)):
        fa, fb = _facts(a.entries[p]), _facts(b.entries[p])
        what = {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
        if what:
            changed["/" + p] = what
    return {"added": ["/" + p for p in added], "removed": ["/" + p for p in removed],
            "changed": changed}


def _kind(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if "/lib/modules/" in path and ".ko" in name:
        return "modules"
    if "/lib/firmware/" in path:
        return "firmware"
    return None


def _sections(a: bytes, b: bytes) -> dict[str, object]:
    from rdforge.formats import pe

    def table(data: bytes) -> dict[str, str]:
        return {str(s["name"]): str(s["sha256"]) for s in pe.describe(data)["sections"]}  # type: ignore[attr-defined]

    ta, tb = table(a), table(b)
    return {"added": sorted(set(tb) - set(ta)), "removed": sorted(set(ta) - set(tb)),
            "changed": sorted(n for n in set(ta) & set(tb) if ta[n] != tb[n])}


def _extensions(a: Path, b: Path, ta: Tree, tb: Tree) -> dict[str, object]:
    """What changed in two DDIs' own facts: root hash, signer, extension-release fields."""
    from rdforge.formats import ddi
    from rdforge.outputs.ddi_tree import extension_release

    out: dict[str, object] = {}
    ia, ib = ddi.describe(a.read_bytes(), str(a)), ddi.describe(b.read_bytes(), str(b))
    for key in ("root_hash", "signed_by"):
        if ia.get(key) != ib.get(key):
            out[key] = [ia.get(key), ib.get(key)]
    ra, rb = extension_release(ta), extension_release(tb)
    fa, fb = (ra[1] if ra else {}), (rb[1] if rb else {})
    changed = {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
    if changed:
        out["extension_release"] = changed
    return out


def diff_images(a: Path, b: Path) -> dict[str, object]:
    """The differences of b against a, as a table (see the module's docstring)."""
    ta, tb = read_tree(a), read_tree(b)
    out: dict[str, object] = {"a": str(a), "b": str(b)}
    if is_ddi(a) and is_ddi(b):
        out["extension"] = _extensions(a, b, ta, tb)
    pa, pb = _packages(a), _packages(b)
    if pa is not None and pb is not None:
        out["packages"] = {
            "added": {n: pb[n].get("version") for n in sorted(set(pb) - set(pa))},
            "removed": {n: pa[n].get("version") for n in sorted(set(pa) - set(pb))},
            "changed": {n: [pa[n].get("version"), pb[n].get("version")] for n in sorted(set(pa) & set(pb))
                        if pa[n].get("version") != pb[n].get("version")
                        or pa[n].get("sha256") != pb[n].get("sha256")},
            "size_changed": {n: [pa[n].get("bytes_in_image"), pb[n].get("bytes_in_image")]
                             for n in sorted(set(pa) & set(pb))
                             if pa[n].get("bytes_in_image") != pb[n].get("bytes_in_image")},
        }
    else:
        out["packages"] = None  # an image without the manifest its build wrote beside it
    files = _files(ta, tb)
    out["files"] = files
    for kind in ("modules", "firmware"):
        out[kind] = {"added": [p for p in files["added"] if _kind(p) == kind],  # type: ignore[attr-defined]
                     "removed": [p for p in files["removed"] if _kind(p) == kind],  # type: ignore[attr-defined]
                     "changed": [p for p in files["changed"] if _kind(p) == kind]}  # type: ignore[attr-defined]
    da, db = a.read_bytes(), b.read_bytes()
    if da[:2] == b"MZ" and db[:2] == b"MZ":
        out["uki_sections"] = _sections(da, db)
    out["identical"] = da == db
    return out


def diff_lines(d: dict[str, object]) -> list[str]:
    """The table as text, most telling first: packages, then files."""
    lines = [f"--- {d['a']}", f"+++ {d['b']}"]
    if d["identical"]:
        return lines + ["identical"]
    pk = d["packages"]
    if isinstance(pk, dict):
        lines += [f"+ package {n} {v}" for n, v in pk["added"].items()]
        lines += [f"- package {n} {v}" for n, v in pk["removed"].items()]
        lines += [f"~ package {n} {v[0]} -> {v[1]}" for n, v in pk["changed"].items()]
        lines += [f"~ package {n}: {v[0]} -> {v[1]} bytes in the image"
                  for n, v in pk["size_changed"].items() if n not in pk["changed"]]
    else:
        lines.append("  packages: not compared (no IMAGE.manifest.json beside both images)")
    ext = d.get("extension")
    if isinstance(ext, dict):
        for key, label in (("root_hash", "root hash"), ("signed_by", "signed by")):
            if key in ext:
                lines.append(f"~ {label} {ext[key][0]} -> {ext[key][1]}")
        for k, (va, vb) in ext.get("extension_release", {}).items():
            lines.append(f"~ extension-release {k}: {va or '(unset)'} -> {vb or '(unset)'}")
    sec = d.get("uki_sections")
    if isinstance(sec, dict):
        lines += [f"{c} section {n}" for c, key in (("+", "added"), ("-", "removed"),
                                                    ("~", "changed")) for n in sec[key]]
    files = d["files"]
    assert isinstance(files, dict)
    lines += [f"+ {p}" for p in files["added"]] + [f"- {p}" for p in files["removed"]]
    for p, what in files["changed"].items():
        lines.append(f"~ {p}: " + ", ".join(
            f"{k} {v[0]} -> {v[1]}" if k != "sha256" else "content" for k, v in what.items()))
    counts = [f"{len(files[k])} {k}" for k in ("added", "removed", "changed")]
    lines.append("files: " + ", ".join(counts))
    return lines
