"""Debian version ordering, as deb-version(7) defines it."""

from __future__ import annotations

import functools
import re

_EPOCH = re.compile(r"^(\d+):")


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def split(version: str) -> tuple[int, str, str]:
    """Split a version into (epoch, upstream, revision)."""
    epoch = 0
    m = _EPOCH.match(version)
    if m:
        epoch = int(m.group(1))
        version = version[m.end():]
    upstream, sep, revision = version.rpartition("-")
    if not sep:
        return epoch, version, ""
    return epoch, upstream, revision


@functools.lru_cache(maxsize=65536)
def compare(a: str, b: str) -> int:
    """Negative, zero or positive as a sorts before, equal to or after b."""
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return ea - eb
    r = _compare_part(ua, ub)
    if r:
        return r
    return _compare_part(ra, rb)


def satisfies(version: str, op: str, wanted: str) -> bool:
    """Whether `version op wanted` holds for a relation operator of Debian policy 7.1."""
    c = compare(version, wanted)
    if op == "=":
        return c == 0
    if op == ">=":
        return c >= 0
    if op == "<=":
        return c <= 0
    if op == ">>":
        return c > 0
    if op == "<<":
        return c < 0
    if op == ">":  # obsolete spelling of >=
        return c >= 0
    if op == "<":  # obsolete spelling of <=
        return c <= 0
    raise ValueError(f"unknown version relation {op!r}")
