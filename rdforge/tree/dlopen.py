"""Libraries that programs load with dlopen(): what the image must carry besides what is
linked, from the binaries' .note.dlopen (systemd's ELF package notes: soname, priority,
feature), and the packages that bring them in."""

from __future__ import annotations

from collections.abc import Callable

from rdforge.formats.elf import is_elf, read_elf
from rdforge.tree import fixups
from rdforge.tree.model import Tree

# Loaded with dlopen() by name but declared in no .note.dlopen: glibc loads libgcc_s for
# thread cancellation and unwinding; systemd's TPM2 code loads the device TCTI driver.
KEEP_SONAMES = {"libgcc_s.so.1"}
TPM_TCTI = {"libtss2-tcti-device.so.0"}


def dlopen_wants(tree: Tree, features: list[str]) -> dict[str, str]:
    """Sonames that binaries declare in .note.dlopen and that the image should carry:
    required and recommended ones, and suggested ones for the configured features; each
    with the first binary (by path) that declares it."""
    out: dict[str, str] = {}
    for path, e in sorted(tree.files()):
        if not is_elf(e.data):
            continue
        for note in read_elf(e.data).dlopen:
            prio = note.get("priority", "recommended")
            if prio in ("required", "recommended") or note.get("feature") in features:
                sonames = note.get("soname", [])
                if isinstance(sonames, list) and sonames:
                    out.setdefault(str(sonames[0]), path)
    return out


def has_soname(tree: Tree, soname: str) -> bool:
    return any(tree.get(f"{d}/{soname}") is not None for d in fixups.LIBDIRS)


def follow_dlopen(tree: Tree, features: list[str], package_for: Callable[[str], str | None],
                  skip: Callable[[str], bool], add: Callable[[dict[str, str]], None],
                  also_unlinked: bool = False, rounds: int = 5) -> None:
    """Add (by `add`, which unpacks them into tree) the packages of the sonames the tree's
    binaries dlopen() and the tree lacks, then again for what those bring, a few rounds;
    skip says which packages not to add (unpacked already, or removed by the config).
    add is given each package with the reason: which soname, loaded by which file.
    also_unlinked: also the libraries loaded without a note (KEEP_SONAMES, and the TPM's
    TCTI driver with the tpm feature), for package sources whose dependencies name only
    linked libraries (rpm's soname Requires); Debian's Depends bring them."""
    extra = (KEEP_SONAMES | (TPM_TCTI if "tpm" in features else set())) if also_unlinked else set()
    for _round in range(rounds):
        wants = dlopen_wants(tree, features)
        wants |= {s: "" for s in sorted(extra) if s not in wants}
        names: dict[str, str] = {}
        for s in sorted(s for s in wants if not has_soname(tree, s)):
            n = package_for(s)
            if n and not skip(n) and n not in names:
                names[n] = f"dlopen() of {s}" + (f" by /{wants[s]}" if wants[s] else
                                                " (loaded without a .note.dlopen)")
        if not names:
            return
        add(names)
