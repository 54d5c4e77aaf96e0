"""What a build tells its user at the end, beside the manifest that records it all: the
facts that can make a boot fail or that the content policy changed, one line each."""

from __future__ import annotations

from rdforge.tree.kmods import Module


def _some(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def build_warnings(mods: list[Module], missing_firmware: list[str],
                   policy: dict[str, object], check_warnings: list[str]) -> list[str]:
    """Missing firmware with the modules that want it; files the content policy dropped or
    changed; the static check's warnings."""
    out: list[str] = []
    missing = set(missing_firmware)
    by_module: dict[str, list[str]] = {}
    for m in mods:
        for fw in m.firmware:
            if fw in missing:
                by_module.setdefault(m.name, []).append(fw)
    for name, files in sorted(by_module.items()):
        out.append(f"module {name} wants firmware the image lacks: {_some(files)} "
                   "(no package of firmware_packages has it)")

    def listed(key: str) -> list[str]:
        v = policy.get(key)
        return [str(x) for x in v] if isinstance(v, list) else []

    for key, what in (("special_files_dropped", "device nodes, FIFOs or sockets dropped"),
                      ("ownership_mapped_to_root", "owners the image does not create, now root"),
                      ("setuid_setgid_cleared", "set-user-ID or set-group-ID bits cleared")):
        if items := listed(key):
            out.append(f"content policy: {len(items)} {what}: {_some(items)}")
    out += check_warnings
    return out
