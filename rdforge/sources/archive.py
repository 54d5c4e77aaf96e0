"""A Debian archive: signed InRelease, hash-checked Packages indexes, package records."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import lzma
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

from rdforge.errors import FormatError, HashMismatch, SignatureError, SourceError
from rdforge.formats.deb822 import parse_stanzas
from rdforge.fsutil import write_atomic
from rdforge.sources.aptconf import DEFAULT_KEYRING, AptSource
from rdforge.sources.cache import BlobCache, cache_root, fetch_bytes
from rdforge.sources.openpgp import verify_clearsigned

INDEX_FORMAT = 7  # bump when Package changes shape (or what its fields share)


@dataclass(frozen=True, slots=True)
class Package:
    """One binary package record of an index, with where to fetch it from."""

    name: str
    version: str
    arch: str
    filename: str
    sha256: str
    size: int
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""
    multi_arch: str = ""
    source: str = ""
    essential: bool = False
    priority: str = "optional"
    base: str = ""  # archive base URI the record came from ("" for a lock's or a local one)
    local: str = ""  # the local .deb file the record was read from (never written to a lock)
    format: str = ""  # "" for a .deb, "rpm" for an rpm-md package (version: its EVR)

    @property
    def url(self) -> str:
        return f"{self.base}/{self.filename}" if self.base else self.filename

    @property
    def key(self) -> str:
        return f"{self.name}_{self.version}_{self.arch}"


@dataclass
class Release:
    """The verified content of one suite's InRelease."""

    suite: str
    codename: str
    date: dt.datetime | None
    valid_until: dt.datetime | None
    by_hash: bool
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (sha256, size)


def _parse_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def parse_release(text: str, suite: str) -> Release:
    st = next(parse_stanzas(text), {})
    rel = Release(suite=st.get("Suite", suite), codename=st.get("Codename", suite),
                  date=_parse_date(st.get("Date")), valid_until=_parse_date(st.get("Valid-Until")),
                  by_hash=st.get("Acquire-By-Hash", "no") == "yes")
    for line in st.get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            if not parts[1].isdigit() or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                raise FormatError(f"{suite} Release: malformed SHA256 line {line.strip()[:80]!r}")
            rel.files[parts[2]] = (parts[0], int(parts[1]))
    return rel


class Archive:
    """The package records of some suites of one or more Debian archives, verified."""

    def __init__(self, sources: list[AptSource], arch: str = "amd64", offline: bool = False,
                 keyring: Path | None = None, now: dt.datetime | None = None) -> None:
        self.sources = sources
        self.arch = arch
        self.offline = offline
        self.keyring = keyring
        self.now = now or dt.datetime.now(dt.UTC)
        self.blobs = BlobCache()
        self.releases: list[Release] = []

    def _release_cache(self, uri: str, suite: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9.-]+", "_", uri)
        return cache_root() / "dists" / safe / suite / "InRelease"

    def load_release(self, src: AptSource, suite: str) -> Release:
        what = f"{src.uri} {suite}"
        stored = self._release_cache(src.uri, suite)
        if self.offline:
            if not stored.exists():
                raise SourceError(f"{what}: no cached InRelease for an offline build")
            signed = stored.read_bytes()
        else:
            signed = fetch_bytes(f"{src.uri}/dists/{suite}/InRelease")
        keyring = self.keyring or src.keyring or DEFAULT_KEYRING
        text = verify_clearsigned(signed, keyring, f"{what} InRelease").decode("utf-8", "replace")
        rel = parse_release(text, suite)
        if rel.valid_until and rel.valid_until < self.now and not self.offline:
            raise SignatureError(f"{what}: InRelease expired on {rel.valid_until:%Y-%m-%d} "
                                 "(stale or replayed metadata)")
        if not self.offline:
            write_atomic(stored, signed)
        return rel

    def _packages_blob(self, src: AptSource, suite: str, rel: Release, comp: str) -> Path | None:
        for name in (f"{comp}/binary-{self.arch}/Packages.xz", f"{comp}/binary-{self.arch}/Packages"):
            if name not in rel.files:
                continue
            sha, size = rel.files[name]
            if rel.by_hash:
                url = f"{src.uri}/dists/{suite}/{comp}/binary-{self.arch}/by-hash/SHA256/{sha}"
            else:
                url = f"{src.uri}/dists/{suite}/{name}"
            if self.offline:
                hit = self.blobs.lookup(sha, size)
                if not hit:
                    raise SourceError(f"{src.uri} {suite} {name}: not cached for an offline build")
                return hit
            try:
                return self.blobs.fetch(url, sha, size)
            except HashMismatch:
                raise
            except SourceError:
                if rel.by_hash:  # a mirror that lags behind its by-hash files
                    return self.blobs.fetch(f"{src.uri}/dists/{suite}/{name}", sha, size)
                raise
        return None

    def packages(self) -> list[Package]:
        """All package records of all configured suites and components."""
        out: list[Package] = []
        self.releases = []
        for src in self.sources:
            for suite in src.suites:
                rel = self.load_release(src, suite)
                self.releases.append(rel)
                for comp in src.components:
                    blob = self._packages_blob(src, suite, rel, comp)
                    if blob is None:
                        continue
                    out += load_index(blob, src.uri, self.arch)
        return out


def _index_cache(sha: str) -> Path:
    return cache_root() / "index" / f"{sha}.v{INDEX_FORMAT}.pickle"


def load_index(blob: Path, base: str, arch: str) -> list[Package]:
    """Parse a (possibly xz-compressed) Packages file, memoised by its content hash."""
    sha = blob.name
    memo = _index_cache(f"{sha}-{hashlib.sha256(base.encode()).hexdigest()[:12]}-{arch}")
    if memo.exists():
        try:
            with open(memo, "rb") as f:
                data: list[Package] = pickle.load(f)
            return data
        except Exception:  # a damaged memo is rebuilt
            memo.unlink(missing_ok=True)
    raw = blob.read_bytes()
    if raw[:6] == b"\xfd7zXZ\x00":
        raw = lzma.decompress(raw)
    pkgs = parse_packages(raw, base, arch)
    del raw
    write_atomic(memo, pickle.dumps(pkgs, protocol=pickle.HIGHEST_PROTOCOL))
    return pkgs


# The fields of a Packages record that rdforge uses; all others (Description above all) are
# never decoded or kept.
_FIELDS = re.compile(rb"^(Package|Version|Architecture|Filename|SHA256|Size|Depends|Pre-Depends|"
                     rb"Provides|Multi-Arch|Source|Essential|Priority):[ \t]*(.*?)[ \t]*$", re.M)


def parse_packages(data: bytes, base: str, arch: str) -> list[Package]:
    """The records of a Packages file for arch (and all), read record by record from the
    bytes: the index is ~100 MB of text of which a small part matters."""
    out: list[Package] = []
    intern: dict[str, str] = {}  # one string object for values many records share
    pos, end = 0, len(data)
    while pos < end:
        nxt = data.find(b"\n\n", pos)
        if nxt < 0:
            nxt = end
        st = {m.group(1).decode(): m.group(2).decode("utf-8", "replace")
              for m in _FIELDS.finditer(data, pos, nxt)}
        pos = nxt + 2
        a = st.get("Architecture", "")
        if a not in (arch, "all") or "Filename" not in st or "SHA256" not in st \
                or "Package" not in st:
            continue
        for k in ("Architecture", "Priority", "Multi-Arch", "Essential"):
            if k in st:
                st[k] = intern.setdefault(st[k], st[k])
        size = st.get("Size", "0")
        if "Version" not in st or not (size.isascii() and size.isdigit()):
            continue  # not a record a package can be installed from, as those without Filename
        out.append(package_from_control(st, base, st["Filename"], st["SHA256"], int(size)))
    return out


def _same_or(name: str, value: str) -> str:
    """value, as the very name object when equal (most packages are their own source)."""
    return name if value == name else value


def package_from_control(st: dict[str, str], base: str, filename: str, sha256: str,
                         size: int) -> Package:
    return Package(
        name=st["Package"], version=st["Version"], arch=st.get("Architecture", ""),
        filename=filename, sha256=sha256, size=size,
        depends=st.get("Depends", ""), pre_depends=st.get("Pre-Depends", ""),
        provides=st.get("Provides", ""), multi_arch=st.get("Multi-Arch", ""),
        source=_same_or(st["Package"], st.get("Source", st["Package"]).split()[0]),
        essential=st.get("Essential", "no") == "yes",
        priority=st.get("Priority", "optional"), base=base)
