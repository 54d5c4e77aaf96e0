"""`rdforge uki` and `rdforge addon`: Unified Kernel Images from the distribution's own stub
(systemd-boot-efi), the kernel the initrd's modules came from, the initrd, the command line
and os-release; signed for Secure Boot (Authenticode).

Sections, in the order systemd's ukify writes them: .osrel .cmdline .uname (.splash .pcrpkey)
.linux .initrd (.ucode), then .sbat (the stub's, the kernel's and a UKI line merged) in place of the stub's
.sbat, and with a PCR key the signed PCR 11 policies (.pcrsig) last. Signing is Authenticode,
written by rdforge without a signing time: signed images are reproducible too."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from rdforge.config import Config
from rdforge.errors import FormatError, RdforgeError
from rdforge.formats import authenticode, pcrsig, pe
from rdforge.formats.deb import DebFile
from rdforge.fsutil import write_atomic
from rdforge.keys import load_private_key, load_signing_key
from rdforge.outputs import microcode

UKI_SBAT = ("sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n"
            "uki,1,UKI,uki,1,https://uapi-group.org/specifications/specs/unified_kernel_image/\n")
ADDON_SBAT = ("sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n"
              "uki-addon,1,UKI Addon,addon,1,"
              "https://www.freedesktop.org/software/systemd/man/latest/systemd-stub.html\n")
STUBS = {"amd64": ("linuxx64.efi.stub", "addonx64.efi.stub"),
         "arm64": ("linuxaa64.efi.stub", "addonaa64.efi.stub")}


class UkiError(RdforgeError):
    """A UKI or addon cannot be assembled or signed."""


@dataclass
class UkiOptions:
    initrd: Path
    output: Path
    cmdline: str = ""
    kernel: Path | None = None
    kernel_version: str = ""
    key: Path | None = None
    cert: Path | None = None
    offline: bool = False
    stub: Path | None = None  # default: from the release's systemd-boot-efi package
    pcr_key: Path | None = None  # RSA key signing PCR 11 policies (.pcrpkey + .pcrsig)
    splash: Path | None = None  # a BMP image systemd-stub shows while it boots (.splash)
    microcode: Path | None = None  # an early microcode cpio (.ucode; default: the initrd's own)


def _manifest(initrd: Path) -> dict[str, object]:
    m = initrd.with_name(initrd.name + ".manifest.json")
    if not m.exists():
        raise UkiError(f"{initrd}: no {m.name} beside it (build the initrd with rdforge)")
    data: dict[str, object] = json.loads(m.read_text())
    return data


def os_release_text(fields: dict[str, str]) -> bytes:
    def q(v: str) -> str:
        return shlex.quote(v) if re.search(r"[^A-Za-z0-9._-]", v) else v
    return "".join(f"{k}={q(v)}\n" for k, v in fields.items()).encode()


def stub_from_archive(release: str, arch: str, addon: bool, offline: bool,
                      version: str = "") -> tuple[bytes, str]:
    """The EFI stub from the release's systemd-boot-efi (verified like every package)."""
    from rdforge.sources.fetch import fetch_all
    from rdforge.sources.plan import load_universe

    if arch not in STUBS:
        raise UkiError(f"no EFI stub known for architecture {arch}")
    name = STUBS[arch][1 if addon else 0]
    src = load_universe(Config(release=release, arch=arch, offline=offline))
    pkg = src.universe.candidates.get("systemd-boot-efi")
    if pkg is None:
        raise UkiError(f"{release} has no systemd-boot-efi package for the EFI stub")
    deb = fetch_all([pkg], offline)[0]
    with DebFile(deb) as d:
        for ti, content in d.data():
            if ti.name.endswith(f"/boot/efi/{name}") and content:
                return content, f"systemd-boot-efi {pkg.version}"
    raise UkiError(f"systemd-boot-efi {pkg.version} has no {name}")


def sign(image: bytes, key: Path, cert: Path) -> bytes:
    """Authenticode signature written by rdforge (deterministic; sbverify and UEFI firmware
    verify it). A key given as a `pkcs11:` URI stays in its token (an HSM, a smart card):
    sbsign signs through OpenSSL's pkcs11 engine, and rdforge attaches what it returns."""
    return authenticode.attach(image, _detached(image, key, cert))


def _detached(image: bytes, key: Path, cert: Path) -> bytes:
    """The detached Authenticode signature of an unsigned image, by a PEM key or in a token."""
    if str(key).startswith("pkcs11:"):
        return _pkcs11_detached(image, str(key), cert)
    return authenticode.detached(image, load_signing_key(key, cert))


def _pkcs11_detached(image: bytes, uri: str, cert: Path) -> bytes:
    import subprocess
    import tempfile

    exe = shutil.which("sbsign")
    if exe is None:
        raise UkiError("a pkcs11: key needs sbsign (apt-get install sbsigntool) and the "
                       "pkcs11 engine (libengine-pkcs11-openssl)")
    with tempfile.TemporaryDirectory(prefix="rdforge-sign-") as tmp:
        unsigned, sig = Path(tmp, "image.efi"), Path(tmp, "image.sig")
        unsigned.write_bytes(image)
        r = subprocess.run([exe, "--engine", "pkcs11", "--key", uri, "--cert", str(cert),
                            "--detached", "--output", str(sig), str(unsigned)],
                           capture_output=True, text=True)
        if r.returncode != 0 or not sig.exists():
            last = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise UkiError(f"signing with {uri.split(';pin-value=')[0]} failed: {last[0]}")
        return sig.read_bytes()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UkiError(f"{what} {path}: {e.strerror}") from None


def sign_file(image: Path, key: Path, cert: Path, output: Path, detached: bool,
              replace: bool = False) -> dict[str, object]:
    """Sign a PE image (a UKI, an addon, a boot loader): the signed image, or with detached
    only the signature, for a signing service to return and `attach_file` to put in place.
    With replace, an image signed already (a distribution's boot loader) loses its
    signatures first, to be signed with this key (a machine's own db or MOK)."""
    data = _read(image, "image")
    try:
        if replace:
            data = authenticode.unsigned(data)
        sig = _detached(data, key, cert)
        out = sig if detached else authenticode.attach(data, sig)
    except FormatError as e:
        raise UkiError(f"{image}: {e}") from None
    write_atomic(output, out, mode=0o644)
    return {"output": str(output), "size": len(out), "detached": detached,
            "digest": authenticode.image_digest(data + b"\0" * (-len(data) % 8)).hex()}


def attach_file(image: Path, signature: Path, output: Path) -> dict[str, object]:
    """Attach a detached Authenticode signature (rdforge sign --detached, sbsign --detached, a
    signing service's) to the unsigned image it was made for."""
    try:
        out = authenticode.attach(_read(image, "image"), _read(signature, "signature"))
    except FormatError as e:
        raise UkiError(f"{signature}: {e}") from None
    write_atomic(output, out, mode=0o644)
    return {"output": str(output), "size": len(out)}


def _splash(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UkiError(f"splash {path}: {e.strerror}") from None
    # BITMAPFILEHEADER: "BM", then the file's size; systemd-stub draws only BMP images.
    if len(data) < 26 or data[:2] != b"BM" or int.from_bytes(data[2:6], "little") != len(data):
        raise UkiError(f"splash {path}: not a BMP image (systemd-stub shows only BMP)")
    return data


def build_uki(o: UkiOptions) -> dict[str, object]:
    from rdforge.tree.kmods import find_kernel

    m = _manifest(o.initrd)
    kver = o.kernel_version or str(m.get("kernel_version", ""))
    if not kver:
        raise UkiError(f"{o.initrd}: its manifest names no kernel version; give --kernel-version")
    kernel = o.kernel or find_kernel(o.initrd, o.kernel_version)
    try:
        linux = kernel.read_bytes()
        initrd = o.initrd.read_bytes()
        ucode = o.microcode.read_bytes() if o.microcode else b""
    except OSError as e:
        raise UkiError(f"{e.filename}: {e.strerror}") from None
    # An initrd built with --microcode starts with its early cpio: that becomes .ucode, which
    # systemd-stub (256 and later) hands to the kernel before the initrd.
    early, initrd = microcode.split_early(initrd)
    ucode = ucode or early
    if ucode and not microcode.split_early(ucode)[0]:
        raise UkiError(f"{o.microcode}: not an early microcode cpio (kernel/x86/microcode/*.bin); "
                       "`rdforge microcode` makes one")
    if o.stub:
        stub, stub_from = o.stub.read_bytes(), str(o.stub)
    else:
        stub, stub_from = stub_from_archive(str(m["release"]), str(m["arch"]), False, o.offline)
    osrel = os_release_text({str(k): str(v) for k, v in dict(m.get("os_release") or {}).items()})  # type: ignore[call-overload]
    pcr_key = load_private_key(o.pcr_key) if o.pcr_key else None
    splash = _splash(o.splash) if o.splash else b""
    sections = [(".osrel", osrel), (".cmdline", o.cmdline.encode()), (".uname", kver.encode()),
                (".splash", splash),
                (".pcrpkey", pcrsig.public_key_pem(pcr_key) if pcr_key else b""),
                (".linux", linux), (".initrd", initrd), (".ucode", ucode),
                (".sbat", pe.merge_sbat([stub, linux], UKI_SBAT))]
    sections = [(n, d) for n, d in sections if d]
    if pcr_key:
        sections.append((".pcrsig", pcrsig.sign(dict(sections), pcr_key)))
    image = pe.build_from_stub(stub, sections)
    signed = bool(o.key and o.cert)
    if o.key or o.cert:
        if not signed:
            raise UkiError("signing needs both --key and --cert")
        assert o.key and o.cert
        image = sign(image, o.key, o.cert)
    write_atomic(o.output, image, mode=0o644)
    info = {"output": str(o.output), "size": len(image), "kernel_version": kver,
            "kernel": str(kernel), "stub": stub_from, "signed": signed,
            "pcr_signed": pcr_key is not None, **pe.describe(image)}
    return info


def build_addon(cmdline: str, output: Path, release: str = "trixie", arch: str = "amd64",
                key: Path | None = None, cert: Path | None = None, offline: bool = False,
                stub_path: Path | None = None) -> dict[str, object]:
    if not cmdline.strip():
        raise UkiError("an addon needs a non-empty --cmdline")
    stub = stub_path.read_bytes() if stub_path else stub_from_archive(release, arch, True, offline)[0]
    image = pe.build_from_stub(stub, [(".cmdline", cmdline.encode()),
                                      (".sbat", pe.merge_sbat([], ADDON_SBAT))])
    if key or cert:
        if not (key and cert):
            raise UkiError("signing needs both --key and --cert")
        image = sign(image, key, cert)
    write_atomic(output, image, mode=0o644)
    return {"output": str(output), "size": len(image), **pe.describe(image)}
