"""rpm-md repository metadata, as createrepo_c writes it and dnf reads it: repodata/repomd.xml
(which names each metadata file with its checksum) and primary.xml (one <package> per rpm:
name, EVR, arch, checksum, location, dependencies, and the files under /etc and the bin
directories). Bytes in, dataclasses out; fetching and checking signatures is the package
source's job.

XML is read with the standard library's expat parser, which resolves no external entities
and refuses exponential entity expansion; the metadata is also checked against a signature
before it is parsed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from rdforge.errors import FormatError

REPO = "{http://linux.duke.edu/metadata/repo}"
COMMON = "{http://linux.duke.edu/metadata/common}"
RPM = "{http://linux.duke.edu/metadata/rpm}"
FILELISTS = "{http://linux.duke.edu/metadata/filelists}"
DEP_KINDS = ("provides", "requires", "conflicts", "obsoletes", "recommends", "suggests",
             "supplements", "enhances")
FLAGS = ("EQ", "LT", "LE", "GT", "GE")


@dataclass(frozen=True)
class RepoFile:
    """One metadata file repomd.xml lists."""

    type: str  # primary, filelists, other, ...
    location: str  # relative to the repository's base
    sha256: str  # of the file as stored (compressed)
    size: int | None


@dataclass(frozen=True)
class Dep:
    """A Provides/Requires/... entry: a name (or a rich dependency in parentheses), with an
    optional comparison against an EVR."""

    name: str
    flags: str = ""  # one of FLAGS, or "" for any version
    epoch: str = ""
    ver: str = ""
    rel: str = ""
    pre: bool = False  # Requires(pre) and friends

    @property
    def evr(self) -> str:
        e = f"{self.epoch}:" if self.epoch and self.epoch != "0" else ""
        return f"{e}{self.ver}-{self.rel}" if self.rel else f"{e}{self.ver}"


@dataclass(frozen=True)
class RpmPackage:
    name: str
    arch: str
    epoch: int
    version: str
    release: str
    sha256: str
    size: int
    location: str
    source_rpm: str = ""
    deps: dict[str, tuple[Dep, ...]] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # primary's: /etc, */bin/, /usr/lib/sendmail

    @property
    def evr(self) -> str:
        e = f"{self.epoch}:" if self.epoch else ""
        return f"{e}{self.version}-{self.release}"


def _parse(data: bytes, what: str) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise FormatError(f"{what}: not well-formed XML ({e})") from None
    except LookupError as e:  # the XML declaration names an encoding Python does not know
        raise FormatError(f"{what}: {e}") from None


def _int(text: str | None, what: str) -> int:
    try:
        return int(text or "")
    except ValueError:
        raise FormatError(f"{what}: {text!r} is not a number") from None


def parse_repomd(data: bytes, what: str = "repomd.xml") -> dict[str, RepoFile]:
    root = _parse(data, what)
    if root.tag != f"{REPO}repomd":
        raise FormatError(f"{what}: not an rpm-md repomd.xml (root element {root.tag})")
    out: dict[str, RepoFile] = {}
    for d in root.iter(f"{REPO}data"):
        kind = d.get("type", "")
        loc = d.find(f"{REPO}location")
        ck = d.find(f"{REPO}checksum")
        if loc is None or not loc.get("href") or ck is None or not ck.text:
            raise FormatError(f"{what}: entry {kind!r} lacks its location or checksum")
        if ck.get("type") != "sha256":
            raise FormatError(f"{what}: {kind} has a {ck.get('type')} checksum, not sha256")
        size = d.find(f"{REPO}size")
        out[kind] = RepoFile(kind, _safe_location(loc.get("href", ""), what), ck.text.strip(),
                             _int(size.text, what) if size is not None else None)
    return out


def _safe_location(href: str, what: str) -> str:
    """A location relative to the repository: no scheme, no absolute path, no `..`."""
    parts = href.split("/")
    if not href or href.startswith("/") or ":" in parts[0] or ".." in parts or "" in parts:
        raise FormatError(f"{what}: location {href!r} is not a path inside the repository")
    return href


def _deps(fmt: ET.Element, kind: str) -> tuple[Dep, ...]:
    group = fmt.find(f"{RPM}{kind}")
    if group is None:
        return ()
    out = []
    for e in group.iter(f"{RPM}entry"):
        flags = e.get("flags", "")
        if flags and flags not in FLAGS:
            raise FormatError(f"primary.xml: unknown dependency flags {flags!r}")
        out.append(Dep(e.get("name", ""), flags, e.get("epoch", ""), e.get("ver", ""),
                       e.get("rel", ""), e.get("pre") == "1"))
    return tuple(out)


def parse_primary(data: bytes, what: str = "primary.xml") -> list[RpmPackage]:
    root = _parse(data, what)
    if root.tag != f"{COMMON}metadata":
        raise FormatError(f"{what}: not an rpm-md primary.xml (root element {root.tag})")
    out = []
    for p in root.iter(f"{COMMON}package"):
        if p.get("type", "rpm") != "rpm":
            continue

        def text(tag: str, p: ET.Element = p) -> str:
            e = p.find(f"{COMMON}{tag}")
            return (e.text or "").strip() if e is not None else ""

        name = text("name")
        v, ck = p.find(f"{COMMON}version"), p.find(f"{COMMON}checksum")
        loc, size = p.find(f"{COMMON}location"), p.find(f"{COMMON}size")
        fmt = p.find(f"{COMMON}format")
        if not name or v is None or ck is None or loc is None or fmt is None:
            raise FormatError(f"{what}: package {name or '?'} lacks a name, version, "
                              "checksum, location or format")
        if ck.get("type") != "sha256":
            raise FormatError(f"{what}: {name} has a {ck.get('type')} checksum, not sha256")
        src = fmt.find(f"{RPM}sourcerpm")
        out.append(RpmPackage(
            name=name, arch=text("arch"), epoch=_int(v.get("epoch") or "0", what),
            version=v.get("ver", ""), release=v.get("rel", ""), sha256=(ck.text or "").strip(),
            size=_int(size.get("package") if size is not None else "", what),
            location=_safe_location(loc.get("href", ""), what),
            source_rpm=(src.text or "") if src is not None else "",
            deps={k: d for k in DEP_KINDS if (d := _deps(fmt, k))},
            files=tuple((f.text or "") for f in fmt.iter(f"{COMMON}file"))))
    return out


def parse_filelists(data: bytes, what: str = "filelists.xml") -> dict[str, list[str]]:
    """Every file path -> the names of the packages that hold it (filelists.xml lists all
    files; primary.xml only those under /etc and the bin directories)."""
    root = _parse(data, what)
    if root.tag != f"{FILELISTS}filelists":
        raise FormatError(f"{what}: not an rpm-md filelists.xml (root element {root.tag})")
    out: dict[str, list[str]] = {}
    for p in root.iter(f"{FILELISTS}package"):
        name = p.get("name", "")
        for f in p.iter(f"{FILELISTS}file"):
            out.setdefault(f.text or "", []).append(name)
    return out
