"""RFC822-style control stanzas (Packages, InRelease, control files, deb822 sources)."""

from __future__ import annotations

from collections.abc import Iterator


def parse_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Yield one dict per paragraph; continuation lines are joined with newlines."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
                fields = {}
            key = ""
            continue
        if line.startswith("#"):
            continue
        if line[0] in " \t":
            if key:
                fields[key] += "\n" + line[1:]
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip()
        fields[key] = value.strip()
    if fields:
        yield fields
