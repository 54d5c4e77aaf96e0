"""Read the host's apt sources (deb822 *.sources and one-line *.list) to learn the mirrors.

Only the mirror URIs and signing keyrings are taken from the host; the release the image is
built from is the image's own, so host suites are mapped onto the target release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rdforge.formats.deb822 import parse_stanzas

DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_POCKET = re.compile(r"^[a-z]+(?P<pocket>-[a-z]+)?$")


@dataclass(frozen=True)
class AptSource:
    """One `deb` line: where, which suites, which components, trusted by which keyring."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    keyring: Path | None = None


def _parse_one_line(line: str) -> AptSource | None:
    line = line.split("#", 1)[0].strip()
    if not line.startswith("deb "):
        return None
    words = line.split()[1:]
    keyring: Path | None = None
    if words and words[0].startswith("["):
        opts: list[str] = []
        while words:
            w = words.pop(0)
            opts.append(w.strip("[]"))
            if w.endswith("]"):
                break
        for opt in opts:
            k, _, v = opt.partition("=")
            if k == "signed-by" and v.startswith("/"):
                keyring = Path(v)
    if len(words) < 2:
        return None
    return AptSource(words[0].rstrip("/"), (words[1],), tuple(words[2:]), keyring)


def read_host_sources(root: Path = Path("/")) -> list[AptSource]:
    """Every enabled binary source the host's apt configuration lists, in apt's file order."""
    etc = root / "etc/apt"
    out: list[AptSource] = []
    files: list[Path] = []
    if (etc / "sources.list").is_file():
        files.append(etc / "sources.list")
    parts = etc / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for f in files:
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for st in parse_stanzas(text):
                if "deb" not in st.get("Types", "").split() or st.get("Enabled", "yes") == "no":
                    continue
                sb = st.get("Signed-By", "").strip()
                keyring = Path(sb) if sb.startswith("/") and "\n" not in sb else None
                for uri in st.get("URIs", "").split():
                    out.append(AptSource(uri.rstrip("/"), tuple(st.get("Suites", "").split()),
                                         tuple(st.get("Components", "").split()), keyring))
        else:
            for line in text.splitlines():
                src = _parse_one_line(line)
                if src:
                    out.append(src)
    return out


def map_to_release(sources: list[AptSource], release: str) -> list[AptSource]:
    """Keep the Debian archive sources and point their suites at `release`.

    `bookworm-updates` becomes `trixie-updates` and so on; suites with other names (third-party
    repositories such as `nodistro`) are dropped, since they do not serve the target release.
    Sources whose keyring does not exist are kept with the default Debian keyring.
    """
    out: list[AptSource] = []
    seen: set[tuple[str, str]] = set()
    for src in sources:
        suites: list[str] = []
        for suite in src.suites:
            m = _POCKET.match(suite)
            if not m or suite in ("nodistro", "stable-updates"):
                continue
            if not (src.keyring is None or "debian-archive" in src.keyring.name):
                continue
            mapped = release + (m.group("pocket") or "")
            if (src.uri, mapped) not in seen:
                seen.add((src.uri, mapped))
                suites.append(mapped)
        if suites:
            out.append(AptSource(src.uri, tuple(suites), src.components, src.keyring))
    return out
