"""rpm's version order: `rpmvercmp` on versions and releases, and EVR (epoch:version-release)
comparison as rpm's dependency matching does it.

A version is compared segment by segment. A segment is a run of ASCII digits or a run of
ASCII letters; anything else only separates segments, except two characters with a meaning
of their own:
- `~` sorts before everything, the end of the string included (`1.0~rc1` < `1.0`);
- `^` sorts after the end of the string but before any other segment (`1.0` < `1.0^git1`
  < `1.0.1`).
Numeric segments compare as numbers (leading zeros ignored) and are newer than alphabetic
ones; alphabetic ones compare as bytes. When every segment compared equal, the version that
has segments left is newer; if only the separators differed, they are equal (`1.0` = `1_0`).

This is rpm's order, not dpkg's (rdforge.sources.version): dpkg compares the non-digit parts
character by character with letters before other characters, rpm skips separators."""

from __future__ import annotations

from dataclasses import dataclass

from rdforge.errors import FormatError


def _is_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _run(s: str, i: int, digits: bool) -> int:
    """The end of the run of digits (or letters) starting at i."""
    while i < len(s) and s[i].isascii() and (s[i].isdigit() if digits else s[i].isalpha()):
        i += 1
    return i


def vercmp(a: str, b: str) -> int:
    """-1, 0 or 1 as version (or release) a sorts before, with or after b."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        while i < len(a) and not _is_alnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < len(b) and not _is_alnum(b[j]) and b[j] not in "~^":
            j += 1
        x = a[i] if i < len(a) else ""
        y = b[j] if j < len(b) else ""
        if x == "~" or y == "~":
            if x != "~":
                return 1
            if y != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if x == "^" or y == "^":
            if not x:
                return -1
            if not y:
                return 1
            if x != "^":
                return 1
            if y != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (x and y):
            break
        digits = x.isdigit()
        ei, ej = _run(a, i, digits), _run(b, j, digits)
        if ej == j:  # b's segment here is of the other kind: a number beats letters
            return 1 if digits else -1
        sa, sb = a[i:ei], b[j:ej]
        if digits:
            sa, sb = sa.lstrip("0"), sb.lstrip("0")
            if len(sa) != len(sb):
                return 1 if len(sa) > len(sb) else -1
        if sa != sb:
            return 1 if sa > sb else -1
        i, j = ei, ej
    rest_a, rest_b = i < len(a), j < len(b)
    if not rest_a and not rest_b:
        return 0
    return -1 if not rest_a else 1


@dataclass(frozen=True)
class EVR:
    """epoch:version-release; release is empty where a dependency names none."""

    epoch: int
    version: str
    release: str = ""

    @classmethod
    def parse(cls, text: str) -> EVR:
        """`[epoch:]version[-release]`, as rpm writes a dependency's version (the release
        is what follows the last dash)."""
        epoch = 0
        head, sep, rest = text.partition(":")
        if sep and (not head or (head.isascii() and head.isdigit())):
            # As rpm reads it: digits and a colon; an empty epoch is 0, and anything else
            # before a colon is part of the version.
            epoch, text = int(head or 0), rest
        version, _, release = text.rpartition("-") if "-" in text else (text, "", "")
        if not version:
            raise FormatError(f"rpm version {text!r}: no version")
        return cls(epoch, version, release)

    def __str__(self) -> str:
        e = f"{self.epoch}:" if self.epoch else ""
        return f"{e}{self.version}-{self.release}" if self.release else f"{e}{self.version}"


def compare(a: EVR, b: EVR, releases: bool = True) -> int:
    """rpm's EVR order. With releases=False, or when either side has no release (a
    dependency on `foo >= 1.2` matches every release of 1.2), releases are not compared."""
    if a.epoch != b.epoch:
        return 1 if a.epoch > b.epoch else -1
    r = vercmp(a.version, b.version)
    if r or not releases or not a.release or not b.release:
        return r
    return vercmp(a.release, b.release)
