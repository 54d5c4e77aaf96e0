"""One table of settings drives the TOML keys, the CLI flags and their help."""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdforge.errors import ConfigError

DEFAULT_PACKAGES: tuple[str, ...] = (
    "base-files", "systemd", "udev", "kmod", "bash", "util-linux", "mount", "e2fsprogs",
    "dmsetup", "systemd-cryptsetup", "libcryptsetup12", "lvm2", "mdadm", "kbd", "console-data",
)


@dataclass(frozen=True)
class Setting:
    key: str  # TOML key; the CLI flag is --key with _ as -
    kind: type
    default: Any
    help: str
    cli: bool = True
    path: bool = False  # names local files: relative ones in a TOML file mean its directory


SETTINGS: tuple[Setting, ...] = (
    Setting("distribution", str, "debian", "the packaging world: debian (apt archives), or a "
            "profile: fedora (an rpm-md repository: --mirror its base URL, --keyring its key), "
            "or the path of a profile TOML file"),
    Setting("release", str, "trixie", "distribution release the image is built from"),
    Setting("arch", str, "amd64", "Debian architecture"),
    Setting("mirror", str, "", "archive URI (http:// or file://); default: the host's apt sources"),
    Setting("components", list, ["main"], "archive components (firmware lives in non-free-firmware)"),
    Setting("keyring", str, "", "OpenPGP keyring that signs the archive; default: the source's "
            "Signed-By, else debian-archive-keyring", path=True),
    Setting("packages", list, list(DEFAULT_PACKAGES), "the base package set", cli=False),
    Setting("add_packages", list, [], "packages to add to the base set"),
    Setting("remove_packages", list, ["tpm-udev", "debconf"], "packages never to install; "
            "dependencies on them count as satisfied (tpm-udev only sets /dev/tpm* groups and "
            "pulls in adduser; debconf serves only maintainer scripts)"),
    Setting("prefer", list, ["mawk"], "providers to prefer for virtual packages", cli=False),
    Setting("weak_dependencies", bool, False, "also install what packages recommend (rpm's "
            "Recommends; rpm-md distributions only)"),
    Setting("dlopen_features", list, ["cryptsetup", "tpm"],
            "systemd dlopen() features (\"suggested\" ones) to include"),
    Setting("keymap", str, "", "console keymap loaded before any prompt (console-data's names: "
            "de-latin1, fr-latin9, uk, ...); at boot a vconsole.keymap credential or "
            "vconsole.keymap= chooses another"),
    Setting("kernel_version", str, "", "kernel version (default: newest linux-image of the release)"),
    Setting("modules_dir", str, "", "take modules from this lib/modules/KVER directory instead", path=True),
    Setting("modules", str, "generic", "module profile: generic, host-only or none"),
    Setting("add_modules", list, [], "extra kernel modules by name"),
    Setting("exclude_modules", list, [], "kernel modules never to include"),
    Setting("firmware_packages", list, [], "firmware packages to take firmware= files from"),
    Setting("microcode", str, "none", "early CPU microcode before the image, from amd64-microcode "
            "and intel-microcode (non-free-firmware): none, all (every vendor and CPU, for a "
            "generic image), host (this machine's CPU)"),
    Setting("compression", str, "zstd", "zstd, xz, gzip, lz4 or none"),
    Setting("compression_level", int, -1, "compression level (-1: the algorithm's default)"),
    Setting("prune", list, [], "extra glob patterns of paths to drop"),
    Setting("keep", list, [], "glob patterns of paths never to drop"),
    Setting("files", dict, {}, "extra files: image path -> local file", cli=False, path=True),
    Setting("trust", list, [], "X.509 certificates (PEM) the initrd trusts for signed sysexts", path=True),
    Setting("sysext_image_policy", str, "root=signed+absent:usr=signed+absent",
            "image policy for system extensions (systemd.image-policy(7)); the default "
            "accepts only extensions whose verity root hash is signed by a trusted key"),
    Setting("output", str, "initrd.img", "where to write the image", path=True),
    Setting("lock", str, "", "lock file: written by a build, read (never written) with --locked; "
            "default: beside the config file (-c my.toml: my.lock), else beside the image "
            "(initrd.img.lock)", path=True),
    Setting("locked", bool, False, "build exactly the packages pinned in the lock file"),
    Setting("offline", bool, False, "use only the cache and local .deb directories"),
    Setting("installed_root", str, "", "with --locked: take the pinned packages from those "
            "installed in this root (a package build's chroot with them in Build-Depends), each "
            "file checked against dpkg's records", path=True),
    Setting("deb_dir", str, "", "a local directory of .deb files to use as the package source", path=True),
    Setting("source_date_epoch", int, -1, "timestamp for every file (default: newest package)"),
    Setting("hwdb", bool, False, "keep the udev hardware database"),
    Setting("max_file_size", int, 256, "largest file a package may put into the image, MiB"),
    Setting("max_unpacked_size", int, 1024, "largest unpacked image (the kernel unpacks it into "
            "RAM), MiB"),
)


@dataclass
class Config:
    distribution: str = "debian"
    release: str = "trixie"
    arch: str = "amd64"
    mirror: str = ""
    components: list[str] = field(default_factory=lambda: ["main"])
    keyring: str = ""
    packages: list[str] = field(default_factory=lambda: list(DEFAULT_PACKAGES))
    add_packages: list[str] = field(default_factory=list)
    remove_packages: list[str] = field(default_factory=lambda: ["tpm-udev", "debconf"])
    prefer: list[str] = field(default_factory=lambda: ["mawk"])
    weak_dependencies: bool = False
    dlopen_features: list[str] = field(default_factory=lambda: ["cryptsetup", "tpm"])
    keymap: str = ""
    kernel_version: str = ""
    modules_dir: str = ""
    modules: str = "generic"
    add_modules: list[str] = field(default_factory=list)
    exclude_modules: list[str] = field(default_factory=list)
    firmware_packages: list[str] = field(default_factory=list)
    microcode: str = "none"
    compression: str = "zstd"
    compression_level: int = -1
    prune: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    trust: list[str] = field(default_factory=list)
    sysext_image_policy: str = "root=signed+absent:usr=signed+absent"
    output: str = "initrd.img"
    lock: str = ""
    locked: bool = False
    offline: bool = False
    installed_root: str = ""
    deb_dir: str = ""
    source_date_epoch: int = -1
    hwdb: bool = False
    max_file_size: int = 256
    max_unpacked_size: int = 1024

    @property
    def package_set(self) -> list[str]:
        out = [p for p in self.packages if p not in self.remove_packages]
        return out + [p for p in self.add_packages if p not in out]


_BY_KEY = {s.key: s for s in SETTINGS}
assert set(_BY_KEY) == {f.name for f in dataclasses.fields(Config)}, "settings table out of sync"


def _coerce(s: Setting, value: Any, where: str) -> Any:
    if s.kind is list:
        if isinstance(value, str):
            return [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {s.key} must be a list of strings")
        return list(value)
    if s.kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {s.key} must be a table")
        return {str(k): str(v) for k, v in value.items()}
    if s.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {s.key} must be true or false")
        return value
    if s.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                return int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: {s.key} must be an integer") from None
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {s.key} must be a string")
    return value


def _relative_to(base: Path, value: Any) -> Any:
    """A TOML file's relative paths, taken from its directory (as dpkg's and systemd's
    configuration does), so a config and its lock can live together in a source tree."""
    def one(v: str) -> str:
        return v if not v or Path(v).is_absolute() or "://" in v else str(base / v)

    if isinstance(value, list):
        return [one(v) for v in value]
    if isinstance(value, dict):
        return {k: one(v) for k, v in value.items()}
    return one(value)


# Configuration layered the way systemd and dracut layer theirs: the distribution's files in
# /usr/lib/rdforge, each overridden by a file of the same name in /etc/rdforge (an empty one
# switches it off), applied in the order of their names; then -c FILE, then the command line.
CONFIG_DIRS = (Path("/usr/lib/rdforge"), Path("/etc/rdforge"))


def config_dirs() -> tuple[Path, ...]:
    """$RDFORGE_CONFIG_DIRS (colon-separated, lowest first; empty for none), else CONFIG_DIRS."""
    import os

    env = os.environ.get("RDFORGE_CONFIG_DIRS")
    if env is None:
        return CONFIG_DIRS
    return tuple(Path(d) for d in env.split(":") if d)


def layered_files(dirs: tuple[Path, ...] | None = None) -> list[Path]:
    """The *.toml files of the configuration directories that apply, in the order applied."""
    chosen: dict[str, Path] = {}
    for d in dirs if dirs is not None else config_dirs():
        try:
            names = sorted(p for p in d.iterdir() if p.name.endswith(".toml"))
        except OSError:
            continue
        for p in names:
            chosen[p.name] = p
    return [chosen[n] for n in sorted(chosen) if _nonempty(chosen[n])]


def _nonempty(p: Path) -> bool:
    try:
        return p.stat().st_size > 0
    except OSError:
        return False


def load(path: Path | None, overrides: dict[str, Any] | None = None,
         layered: bool = True) -> Config:
    """Defaults, then the layered configuration files, then the TOML file's [build] table
    (or top level), then CLI overrides. A distribution profile's settings replace the
    defaults that none of these set."""
    cfg = Config()
    given: set[str] = set()
    for f in layered_files() if layered else []:
        given |= _apply_file(cfg, f)
    if path is not None:
        given |= _apply_file(cfg, path)
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        setattr(cfg, k, _coerce(_BY_KEY[k], v, "command line"))
        given.add(k)
    prof = profile(cfg.distribution)
    for k, v in prof.settings.items():
        if k not in given:
            setattr(cfg, k, v)
    if path is not None and not cfg.lock:
        cfg.lock = str(path.with_suffix(".lock"))
    validate(cfg)
    return cfg


def _apply_file(cfg: Config, path: Path) -> set[str]:
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: malformed TOML ({e})") from None
    table = data.get("build", data)
    other = sorted(k for k in data if k != "build") if "build" in data else []
    if other:  # a [sysext] or [uki] table would otherwise be silently ignored
        raise ConfigError(f"{path}: unknown table or key {other[0]!r} beside [build] (a "
                          "configuration file holds build settings only, in [build] or at the top)")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [build] must be a table of settings")
    for k, v in table.items():
        s = _BY_KEY.get(k)
        if s is None:
            raise ConfigError(f"{path}: unknown key {k!r}")
        value = _coerce(s, v, str(path))
        setattr(cfg, k, _relative_to(path.parent, value) if s.path else value)
    return set(table)


BACKENDS = ("apt", "rpm-md")


@dataclass(frozen=True)
class Profile:
    """A distribution's packaging backend, kernel package and build defaults (TOML data in
    rdforge/profiles/, or a file of the same form)."""

    name: str
    backend: str = "apt"
    kernel_package: str = ""  # "" for apt: the newest linux-image of the release
    settings: dict[str, Any] = field(default_factory=dict)


def profile(name: str) -> Profile:
    if name == "debian":
        return Profile("debian")
    path = Path(name) if "/" in name or name.endswith(".toml") else \
        Path(__file__).parent / "profiles" / f"{name}.toml"
    if not path.is_file():
        known = sorted(["debian"] + [p.stem for p in (Path(__file__).parent / "profiles").glob("*.toml")])
        raise ConfigError(f"distribution {name!r}: no such profile ({', '.join(known)}, or a "
                          "profile TOML file)")
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not a readable profile ({e})") from None
    backend, kernel = data.pop("backend", "apt"), data.pop("kernel_package", "")
    table = data.pop("build", {})
    if data or backend not in BACKENDS or not isinstance(table, dict) or not isinstance(kernel, str):
        raise ConfigError(f"{path}: a profile has backend ({' or '.join(BACKENDS)}), "
                          "kernel_package and a [build] table of settings, nothing else")
    settings = {}
    for k, v in table.items():
        if k not in _BY_KEY or k == "distribution":
            raise ConfigError(f"{path}: unknown key {k!r} in [build]")
        settings[k] = _coerce(_BY_KEY[k], v, str(path))
    return Profile(path.stem, backend, kernel, settings)


# The newc cpio header stores a file's time in 8 hex digits: seconds since 1970 up to 2^32-1
# (the year 2106). A later time cannot be written into an initrd.
EPOCH_MAX = 2**32 - 1
LEVELS = {"zstd": (1, 22), "xz": (0, 9), "gzip": (1, 9), "lz4": (1, 12)}
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
RPM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+.-]*")


def check_epoch(value: int, where: str) -> int:
    if not 0 <= value <= EPOCH_MAX:
        raise ConfigError(f"{where} {value} is out of range: an initrd's cpio stores times as "
                          f"32-bit seconds since 1970 (0 to {EPOCH_MAX})")
    return value


def validate(cfg: Config) -> None:
    from rdforge.formats.compress import ALGORITHMS

    if cfg.compression not in ALGORITHMS:
        raise ConfigError(f"compression {cfg.compression!r} is not one of {', '.join(ALGORITHMS)}")
    if cfg.compression_level != -1:
        lo, hi = LEVELS.get(cfg.compression, (0, 0))
        if cfg.compression not in LEVELS:
            raise ConfigError(f"compression {cfg.compression!r} takes no compression level")
        if not lo <= cfg.compression_level <= hi:
            raise ConfigError(f"compression level {cfg.compression_level} is out of range for "
                              f"{cfg.compression} ({lo} to {hi}, or -1 for the default)")
    for key in ("max_file_size", "max_unpacked_size"):
        if not 1 <= getattr(cfg, key) <= 1 << 20:
            raise ConfigError(f"{key} {getattr(cfg, key)} is out of range (1 to {1 << 20} MiB)")
    if cfg.source_date_epoch != -1:
        check_epoch(cfg.source_date_epoch, "source_date_epoch")
    backend = profile(cfg.distribution).backend
    names = PACKAGE_NAME if backend == "apt" else RPM_NAME
    for key in ("packages", "add_packages", "remove_packages", "firmware_packages"):
        for name in getattr(cfg, key):
            if not names.fullmatch(name):
                raise ConfigError(f"{key}: {name!r} is not a package name")
    if backend == "apt" and cfg.weak_dependencies:
        raise ConfigError("weak_dependencies: for rpm-md distributions only (apt's Recommends "
                          "are not followed; name the packages instead)")
    if backend != "apt" and (cfg.firmware_packages or cfg.microcode != "none"
                             or cfg.installed_root or cfg.deb_dir):
        raise ConfigError(f"distribution {cfg.distribution}: firmware_packages, microcode, "
                          "installed_root and deb_dir serve apt sources only (so far)")
    if cfg.microcode not in ("none", "all", "host"):
        raise ConfigError(f"microcode {cfg.microcode!r} is not none, all or host")
    if backend == "rpm-md" and not (cfg.mirror and cfg.keyring):
        raise ConfigError(f"distribution {cfg.distribution}: give the rpm-md repository "
                          "(--mirror URL, the directory holding repodata/) and its key (--keyring)")
    if cfg.modules not in ("generic", "host-only", "none"):
        raise ConfigError(f"modules profile {cfg.modules!r} is not generic, host-only or none")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add one flag per CLI setting (dest = setting key, default None = not given)."""
    for s in SETTINGS:
        if s.cli:
            add_argument(p, s.key)


def add_argument(p: argparse.ArgumentParser, key: str) -> None:
    """The flag of one setting, for commands that take a few of them."""
    s = _BY_KEY[key]
    flag = "--" + s.key.replace("_", "-")
    if s.kind is bool:
        p.add_argument(flag, dest=s.key, action="store_const", const=True, default=None,
                       help=s.help)
    elif s.kind is list:
        p.add_argument(flag, dest=s.key, action="extend", nargs="+", default=None,
                       metavar="X", help=s.help)
    else:
        p.add_argument(flag, dest=s.key, type=s.kind, default=None, help=s.help)


def overrides_from(ns: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in SETTINGS:
        if s.cli and getattr(ns, s.key, None) is not None:
            out[s.key] = getattr(ns, s.key)
    return out
