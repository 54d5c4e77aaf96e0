"""Command line: parse, call one function of outputs/ or vm/, print. No logic lives here."""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import sys
from pathlib import Path

from rdforge import __version__, config
from rdforge.errors import ConfigError, RdforgeError
from rdforge.progress import Progress


def _build(ns: argparse.Namespace) -> int:
    from rdforge.outputs.initrd import build

    cfg = config.load(Path(ns.config) if ns.config else None, config.overrides_from(ns))
    res = build(cfg, Progress(not ns.json and not ns.quiet))
    if ns.json:
        print(json.dumps({"output": str(res.output), "size": res.size, "sha256": res.sha256,
                          "kernel_version": res.kernel_version, "packages": len(res.packages),
                          "modules": res.modules, "files": res.files, "timings": res.timings}))
    elif not ns.quiet:
        print(f"{res.output}: {res.size / 1e6:.1f} MB, {len(res.packages)} packages, "
              f"{res.modules} modules for {res.kernel_version}, sha256 {res.sha256[:16]}…")
    return 0


def _inspect(ns: argparse.Namespace) -> int:
    from rdforge.outputs.inspect import inspect_image

    report = inspect_image(Path(ns.image), check=ns.check)
    lines = report.pop("summary_lines")
    if ns.json:
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(str(x) for x in lines))  # type: ignore[attr-defined]
    chk = report.get("check")
    return 1 if isinstance(chk, dict) and chk.get("problems") else 0


def _forward(spec: str) -> tuple[int, int]:
    host, sep, guest = spec.partition(":")
    if not (sep and host.isdigit() and guest.isdigit()):
        raise ConfigError(f"--forward {spec!r}: expected HOSTPORT:GUESTPORT")
    return int(host), int(guest)


def _boot(ns: argparse.Namespace) -> int:
    from rdforge.vm.boot import BootOptions, boot

    if not ns.initrd and not ns.uki:
        raise ConfigError("give --initrd (a kernel comes from the cache) or --uki")
    opts = BootOptions(initrd=Path(ns.initrd) if ns.initrd else None,
                       uki=Path(ns.uki) if ns.uki else None,
                       esp_extra=tuple(Path(x) for x in ns.esp_extra or ()),
                       secure_boot_vars=Path(ns.secure_boot_vars) if ns.secure_boot_vars else None,
                       secure_boot_cert=Path(ns.secure_boot) if ns.secure_boot else None,
                       kernel=Path(ns.kernel) if ns.kernel else None,
                       kernel_version=ns.kernel_version or "", root_image=Path(ns.root_image)
                       if ns.root_image else None, root_from_packages=ns.root_from_packages,
                       disk_bus=ns.disk_bus, append=ns.append or "", expect=ns.expect,
                       timeout=ns.timeout, log=Path(ns.log) if ns.log else None,
                       echo=not ns.json and not ns.quiet, release=ns.release,
                       luks_passphrase=ns.luks or "",
                       sysexts=tuple(Path(x) for x in ns.sysext or ()),
                       credentials=tuple(Path(x) for x in ns.credential or ()),
                       smbios_credentials=tuple(ns.set_credential or ()),
                       forwards=tuple(_forward(x) for x in ns.forward or ()),
                       tpm_state=Path(ns.tpm) if ns.tpm else None)
    res = boot(opts)
    if ns.json:
        print(json.dumps(res.to_json(), indent=1))
    else:
        print(f"{'OK' if res.ok else 'FAILED'}: {res.reason} after {res.seconds:.1f}s",
              file=sys.stderr)
    return 0 if res.ok else 1


def _genkey(ns: argparse.Namespace) -> int:
    from rdforge.keys import genkey

    key, cert = genkey(ns.name, Path(ns.output), bits=ns.bits)
    print(f"{key}\n{cert}")
    return 0


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        dest, sep, src = item.partition("=")
        if not sep or not dest or not src:
            raise ConfigError(f"{what} {item!r}: expected IMAGE-PATH=LOCAL-FILE")
        out[dest] = src
    return out


def _sysext(ns: argparse.Namespace) -> int:
    from rdforge.outputs.sysext import MAINTSCRIPT_ONLY, SysextOptions, build_sysext

    out = Path(ns.output or f"{ns.name}.raw")
    removed = sorted((set(MAINTSCRIPT_ONLY) | set(ns.remove_packages or ()))
                     - set(ns.keep_packages or ()))
    o = SysextOptions(name=ns.name, base=Path(ns.base), output=out, packages=ns.packages or [],
                      files=_pairs(ns.file, "--file"), enable=ns.enable or [],
                      key=Path(ns.key) if ns.key else None, cert=Path(ns.cert) if ns.cert else None,
                      fs=ns.fs, offline=ns.offline, version=ns.version or "",
                      remove_packages=removed, from_base=ns.from_base or [])
    res = build_sysext(o, Progress(not ns.quiet and not ns.json))
    if ns.json:
        print(json.dumps(res.manifest, indent=1))
    elif not ns.quiet:
        print(f"{res.output}: {res.size / 1e6:.1f} MB, {len(res.packages)} packages, {res.files} "
              f"files, root hash {res.root_hash[:16]}…, {'signed' if res.signed else 'UNSIGNED'}")
        if res.dropped:
            print(f"  dropped {len(res.dropped)} paths outside /usr and /opt (see the manifest)")
    return 0


def _tpm2_primary(ns: argparse.Namespace) -> int:
    from rdforge.formats import tpm2
    from rdforge.fsutil import write_atomic
    from rdforge.outputs.credential import storage_primary

    pub = storage_primary(ns.tpm2_device, None)
    fp = tpm2.parse_public(pub).fingerprint
    write_atomic(Path(ns.output), pub)
    print(f"{ns.output}: TPM storage key, fingerprint {fp}")
    return 0


def _credential(ns: argparse.Namespace) -> int:
    import os
    import time

    from rdforge.formats import creds
    from rdforge.fsutil import write_atomic

    secret = None
    if ns.host_secret:
        try:
            secret = creds.host_key(Path(ns.host_secret).read_bytes())
        except OSError as e:
            raise ConfigError(f"host secret {ns.host_secret}: {e.strerror}") from None
    if ns.show:
        try:
            blob = Path(ns.name).read_bytes()
        except OSError as e:
            raise ConfigError(f"{ns.name}: {e.strerror}") from None
        from rdforge.outputs.credential import tpm2_unsealer

        c = creds.decrypt(blob, None, secret, tpm2_unsealer(ns.tpm2_device))
        info = {"name": c.name, "key": c.kind, "timestamp_us": c.timestamp_us,
                "not_after_us": None if c.not_after_us == creds.INFINITY else c.not_after_us,
                "size": len(c.data), "sha256": hashlib.sha256(c.data).hexdigest()}
        print(json.dumps(info, indent=1) if ns.json else
              "\n".join(f"{k}: {v}" for k, v in info.items()))
        return 0
    if (ns.value is None) == (ns.value_from_file is None):
        raise ConfigError("give exactly one of --value and --value-from-file")
    if ns.value is not None:
        data = ns.value.encode()
    else:
        try:
            data = Path(ns.value_from_file).read_bytes()
        except OSError as e:
            raise ConfigError(f"--value-from-file {ns.value_from_file}: {e.strerror}") from None
        if data.endswith(b"\n") and data.count(b"\n") == 1:
            data = data[:-1]  # a one-line file (a password hash, a key): not its newline
    kind = {"null": creds.KEY_NULL, "host": creds.KEY_HOST, "tpm2": creds.KEY_TPM2,
            "host+tpm2": creds.KEY_HOST_TPM2}[ns.encrypt]
    if kind in (creds.KEY_HOST, creds.KEY_HOST_TPM2) and secret is None:
        raise ConfigError(f"--encrypt {ns.encrypt} needs --host-secret FILE (the machine's "
                          "/var/lib/systemd/credential.secret)")
    seal = None
    if kind in (creds.KEY_TPM2, creds.KEY_HOST_TPM2):
        from rdforge.outputs.credential import seal_for_tpm

        seal = seal_for_tpm(ns.tpm2_device, ns.tpm2_primary, ns.tpm2_pcrs,
                            ns.tpm2_public_key, ns.tpm2_public_key_pcrs)
        if ns.tpm2_public_key:
            kind = creds.KEY_TPM2_PK if kind == creds.KEY_TPM2 else creds.KEY_HOST_TPM2_PK
    elif ns.tpm2_device or ns.tpm2_primary or ns.tpm2_pcrs or ns.tpm2_public_key:
        raise ConfigError(f"--tpm2-* options need --encrypt tpm2 or host+tpm2, not {ns.encrypt}")
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", int(time.time())))
    not_after = creds.INFINITY if ns.not_after is None else ns.not_after * 1_000_000
    raw = creds.encrypt(ns.name, data, kind, secret, epoch * 1_000_000, not_after, tpm2=seal)
    out = Path(ns.output or f"{ns.name}.cred")
    write_atomic(out, creds.armor(raw), mode=0o600)
    print(f"{out}: credential {ns.name}, {len(data)} bytes, {ns.encrypt} key")
    return 0


def _uki(ns: argparse.Namespace) -> int:
    from rdforge.outputs.uki import UkiOptions, build_uki

    info = build_uki(UkiOptions(initrd=Path(ns.initrd), output=Path(ns.output),
                                cmdline=ns.cmdline or "", kernel=Path(ns.kernel) if ns.kernel else None,
                                kernel_version=ns.kernel_version or "",
                                key=Path(ns.key) if ns.key else None,
                                cert=Path(ns.cert) if ns.cert else None, offline=ns.offline,
                                pcr_key=Path(ns.pcr_key) if ns.pcr_key else None,
                                splash=Path(ns.splash) if ns.splash else None,
                                microcode=Path(ns.microcode) if ns.microcode else None,
                                stub=Path(ns.stub) if ns.stub else None))
    if ns.json:
        print(json.dumps(info, indent=1))
    else:
        print(f"{info['output']}: {int(info['size']) / 1e6:.1f} MB UKI for {info['kernel_version']}"  # type: ignore[call-overload]
              f" ({info['stub']}), {'signed' if info['signed'] else 'unsigned'}"
              f"{', PCR 11 policies signed' if info['pcr_signed'] else ''}")
    return 0


def _update(ns: argparse.Namespace) -> int:
    from rdforge.outputs.update import installed_kernels, report, root_dir, update

    cfg = config.load(Path(ns.config) if ns.config else None, {})
    kvers = ns.kversion or []
    if not kvers:  # like update-initramfs: the newest installed kernel
        newest = installed_kernels(root_dir())[-1:]
        if not newest:
            raise ConfigError(f"no kernel is installed under {root_dir()} (give -k KVER)")
        kvers = newest
    results = update(cfg, kvers, ns.action, Progress(ns.verbose))
    if ns.json:
        print(json.dumps([r.__dict__ for r in results], indent=1))
    else:
        report(results)  # on stderr: kernel hooks must keep stdout clean
    return 0


def _kernel_install_add(ns: argparse.Namespace) -> int:
    from rdforge.outputs.kernel_install import add

    cfg = config.load(None, {})
    written = add(cfg, ns.kver, Path(ns.image), [Path(p) for p in ns.initrds],
                  Progress(os.environ.get("KERNEL_INSTALL_VERBOSE", "0") not in ("", "0")))
    if written and os.environ.get("KERNEL_INSTALL_VERBOSE", "0") not in ("", "0"):
        print(f"rdforge: wrote {', '.join(written)} for {ns.kver}", file=sys.stderr)
    return 0


def _debian_package(ns: argparse.Namespace) -> int:
    import time

    from rdforge.outputs.debian_package import write_source_package

    cfg = Path(ns.config)
    lock = Path(ns.lock) if ns.lock else cfg.with_suffix(".lock")
    info = write_source_package(cfg, lock, Path(ns.out), ns.version, ns.maintainer,
                                int(os.environ.get("SOURCE_DATE_EPOCH") or time.time()),
                                ns.uki_cmdline)
    print(json.dumps(info, indent=1) if ns.json else
          f"{info['output']}: source package {info['source']} {info['version']} "
          f"(builds {info['binary']}; dpkg-buildpackage -b in it)")
    return 0


def _microcode(ns: argparse.Namespace) -> int:
    from rdforge.fsutil import write_atomic
    from rdforge.outputs.microcode import build_microcode

    cfg = config.load(Path(ns.config) if ns.config else None, config.overrides_from(ns))
    data, info = build_microcode(cfg, ns.host, Path(ns.installed) if ns.installed else None)
    write_atomic(Path(ns.out), data, mode=0o644)
    info = {"output": ns.out, **info}
    if ns.json:
        print(json.dumps(info, indent=1))
    else:
        vendors = dict(info.get("vendors") or {})  # type: ignore[call-overload]
        print(f"{ns.out}: early microcode, {len(data)} bytes ("
              + ", ".join(f"{v} {n} bytes" for v, n in vendors.items()) + ")")
    return 0


def _sign(ns: argparse.Namespace) -> int:
    from rdforge.outputs.uki import sign_file

    out = Path(ns.output or (ns.image + (".sig" if ns.detached else ".signed")))
    info = sign_file(Path(ns.image), Path(ns.key), Path(ns.cert), out, ns.detached, ns.replace)
    print(json.dumps(info, indent=1) if ns.json else
          f"{info['output']}: {'detached signature' if ns.detached else 'signed image'}, "
          f"{info['size']} bytes")
    return 0


def _attach(ns: argparse.Namespace) -> int:
    from rdforge.outputs.uki import attach_file

    info = attach_file(Path(ns.image), Path(ns.signature), Path(ns.output or ns.image))
    print(json.dumps(info, indent=1) if ns.json else f"{info['output']}: signed, {info['size']} bytes")
    return 0


def _addon(ns: argparse.Namespace) -> int:
    from rdforge.outputs.uki import build_addon

    info = build_addon(ns.cmdline, Path(ns.output), ns.release, ns.arch,
                       Path(ns.key) if ns.key else None, Path(ns.cert) if ns.cert else None,
                       ns.offline)
    print(json.dumps(info, indent=1) if ns.json else f"{info['output']}: addon, {info['size']} bytes")
    return 0


def _pe_output_args(p: argparse.ArgumentParser, default_output: str) -> None:
    """Signing, offline and output flags shared by `uki` and `addon`."""
    p.add_argument("--key", help="Secure Boot signing key: a PEM file, or a pkcs11: URI (a key in an "
                   "HSM or token, signed through sbsign and the pkcs11 engine)")
    p.add_argument("--cert", help="its certificate (PEM)")
    p.add_argument("--offline", action="store_true", help="the stub from the package cache only")
    p.add_argument("-o", dest="output", default=default_output)
    p.add_argument("--json", action="store_true")


DESCRIPTION = ("rdforge builds Linux initrds the way a distribution ships its kernel: directly "
               "from the distribution's signed packages, bit-for-bit reproducible, with systemd "
               "inside. System extensions, credentials and Unified Kernel Images add what a "
               "machine needs without rebuilding the image.")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rdforge", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"rdforge {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="print a traceback for an internal error (also: RDFORGE_DEBUG=1)")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="build an initrd from the distribution's packages")
    b.add_argument("-c", "--config", help="TOML configuration file")
    b.add_argument("-o", dest="output", help="output image (same as --output)")
    config.add_arguments(b)
    b.add_argument("--json", action="store_true", help="print a JSON summary")
    b.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    b.set_defaults(func=_build)

    i = sub.add_parser("inspect", help="list what an initrd contains")
    i.add_argument("image")
    i.add_argument("--check", action="store_true", help="run the static check on it")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_inspect)

    v = sub.add_parser("boot", help="boot an initrd in qemu and assert on the console")
    v.add_argument("--initrd", help="the initrd to boot with the kernel")
    v.add_argument("--uki", help="boot this Unified Kernel Image with UEFI firmware (OVMF)")
    v.add_argument("--esp-extra", nargs="+", action="extend", metavar="FILE",
                   help="files for the UKI's extra.d folder on the ESP (.cred, .raw, .addon.efi)")
    v.add_argument("--secure-boot", metavar="CERT",
                   help="UEFI Secure Boot on, with CERT enrolled in db (needs virt-fw-vars)")
    v.add_argument("--secure-boot-vars", metavar="VARS.fd",
                   help="OVMF variable store with Secure Boot keys enrolled (turns Secure Boot on)")
    v.add_argument("--kernel", help="vmlinuz (default: from the kernel package in the cache)")
    v.add_argument("--kernel-version", help="pick the cached kernel package of this version")
    v.add_argument("--release", default="trixie")
    v.add_argument("--root-image", help="raw disk image holding the root file system")
    v.add_argument("--root-from-packages", action="store_true",
                   help="make a small root file system from packages (busybox-static)")
    v.add_argument("--disk-bus", default="virtio", choices=["virtio", "nvme", "ahci", "scsi", "usb"])
    v.add_argument("--luks", metavar="PASSPHRASE",
                   help="wrap the root file system in LUKS2 and type PASSPHRASE at the prompt")
    v.add_argument("--sysext", action="append", metavar="IMAGE",
                   help="hand a system extension to the initrd as /.extra/sysext/ (repeatable)")
    v.add_argument("--credential", action="append", metavar="FILE",
                   help="hand a credential to the initrd as /.extra/credentials/ (repeatable)")
    v.add_argument("--set-credential", action="append", metavar="NAME=VALUE",
                   help="a plain credential through qemu's SMBIOS type 11 strings (repeatable)")
    v.add_argument("--tpm", metavar="STATE-DIR",
                   help="attach a software TPM 2.0 (swtpm) whose state lives in STATE-DIR")
    v.add_argument("--forward", action="append", metavar="HOSTPORT:GUESTPORT",
                   help="user networking with this TCP port forwarded from 127.0.0.1")
    v.add_argument("--append", help="extra kernel command line")
    v.add_argument("--expect", default=None, help="console text that means success")
    v.add_argument("--timeout", type=float, default=300)
    v.add_argument("--log", help="write the console to this file")
    v.add_argument("--json", action="store_true")
    v.add_argument("-q", "--quiet", action="store_true")
    v.set_defaults(func=_boot)

    g = sub.add_parser("genkey", help="make an RSA signing key and a self-signed certificate")
    g.add_argument("--name", required=True, help="the certificate's common name")
    g.add_argument("-o", dest="output", default="keys", help="directory for key.pem and cert.pem")
    g.add_argument("--bits", type=int, default=2048, choices=[2048, 3072, 4096])
    g.set_defaults(func=_genkey)

    x = sub.add_parser("sysext", help="build a signed dm-verity system extension for an initrd")
    x.add_argument("name", help="extension name (its extension-release.NAME)")
    x.add_argument("--base", required=True, help="the initrd the extension is for")
    x.add_argument("--packages", nargs="+", action="extend", help="packages to add")
    x.add_argument("--remove-packages", nargs="+", action="extend", metavar="PKG",
                   help="packages never to add; dependencies on them count as satisfied "
                   "(besides those that only serve maintainer scripts: perl-base, adduser, ...)")
    x.add_argument("--keep-packages", nargs="+", action="extend", metavar="PKG",
                   help="add these even though they only serve maintainer scripts")
    x.add_argument("--from-base", action="append", metavar="GLOB",
                   help="files of the base image's packages that its build pruned, e.g. "
                   "'usr/lib/systemd/systemd-networkd*' (repeatable)")
    x.add_argument("--file", action="append", metavar="IMAGE-PATH=LOCAL-FILE",
                   help="add a local file under /usr or /opt (repeatable)")
    x.add_argument("--enable", action="append", metavar="UNIT",
                   help="start this unit of the extension in the initrd (repeatable)")
    x.add_argument("--key", help="PEM private key to sign the verity root hash")
    x.add_argument("--cert", help="PEM certificate of that key")
    x.add_argument("--fs", default="erofs", choices=["erofs", "squashfs"])
    x.add_argument("--version", help="SYSEXT_VERSION_ID for extension-release")
    x.add_argument("--offline", action="store_true", help="use only the package cache")
    x.add_argument("-o", dest="output", help="output image (default NAME.raw)")
    x.add_argument("--json", action="store_true")
    x.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    x.set_defaults(func=_sysext)

    u = sub.add_parser("uki", help="assemble a Unified Kernel Image (and sign it for Secure Boot)")
    u.add_argument("--initrd", required=True, help="an initrd built by rdforge")
    u.add_argument("--cmdline", default="", help="kernel command line in the image")
    u.add_argument("--kernel", help="vmlinuz (default: the initrd's kernel package, cached)")
    u.add_argument("--kernel-version", help="the kernel version (default: the initrd's)")
    u.add_argument("--pcr-key", help="RSA key (PEM) signing the PCR 11 policies of each boot "
                   "phase (.pcrsig, with its public key as .pcrpkey)")
    u.add_argument("--splash", help="BMP image systemd-stub shows while it boots (.splash)")
    u.add_argument("--stub", help="the EFI stub (default: from the release's systemd-boot-efi)")
    u.add_argument("--microcode", help="early microcode cpio for the .ucode section (default: "
                   "the one an initrd built with --microcode starts with)")
    _pe_output_args(u, "vmlinuz.efi")
    u.set_defaults(func=_uki)

    up = sub.add_parser("update", help="make, refresh or remove /boot/initrd.img-KVER for "
                        "installed kernels (what update-initramfs does; the kernel hooks call it)")
    act = up.add_mutually_exclusive_group()
    act.add_argument("-c", dest="action", action="store_const", const="create",
                     help="create (or replace) the initrd")
    act.add_argument("-u", dest="action", action="store_const", const="update",
                     help="update existing initrds (the default)")
    act.add_argument("-d", dest="action", action="store_const", const="delete",
                     help="remove the initrd and its state")
    up.add_argument("-k", dest="kversion", action="append", metavar="KVER",
                    help="kernel version, or all (default: the newest installed)")
    up.add_argument("--config", help="TOML configuration file (after /usr/lib/rdforge and "
                    "/etc/rdforge)")
    up.add_argument("-v", "--verbose", action="store_true", help="show the build's progress")
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=_update, action="update")

    ki = sub.add_parser("kernel-install-add", help="what the kernel-install plugin "
                        "50-rdforge.install runs (reads KERNEL_INSTALL_* from kernel-install)")
    ki.add_argument("kver")
    ki.add_argument("image")
    ki.add_argument("initrds", nargs="*")
    ki.set_defaults(func=_kernel_install_add)

    sg = sub.add_parser("sign", help="Authenticode-sign a PE image (UKI, addon), or make only "
                        "the detached signature a signing service returns")
    sg.add_argument("image")
    sg.add_argument("--key", required=True, help="signing key: PEM file or pkcs11: URI")
    sg.add_argument("--cert", required=True, help="its certificate (PEM)")
    sg.add_argument("--detached", action="store_true", help="write only the signature "
                    "(PKCS#7 DER, as sbsign --detached)")
    sg.add_argument("--replace", action="store_true", help="an image signed already loses its "
                    "signatures first (re-sign a distribution's boot loader with your own key)")
    sg.add_argument("-o", dest="output", help="default IMAGE.sig or IMAGE.signed")
    sg.add_argument("--json", action="store_true")
    sg.set_defaults(func=_sign)
    at = sub.add_parser("attach", help="attach a detached signature to the unsigned image it "
                        "was made for (as sbattach --attach)")
    at.add_argument("image")
    at.add_argument("signature")
    at.add_argument("-o", dest="output", help="default: the image itself")
    at.add_argument("--json", action="store_true")
    at.set_defaults(func=_attach)

    dp = sub.add_parser("debian-package", help="write the source package of a vendor initrd "
                        "(linux-initrd-KVER: /usr/lib/modules/KVER/initrd, optionally a UKI)")
    dp.add_argument("-c", "--config", required=True, help="the initrd's TOML configuration")
    dp.add_argument("--lock", help="its lock (default: beside the configuration)")
    dp.add_argument("--version", default="1", help="the package version (default 1)")
    dp.add_argument("--maintainer", default="rdforge maintainers <maintainers@rdforge.invalid>")
    dp.add_argument("--uki-cmdline", help="also an unsigned UKI with this command line")
    dp.add_argument("-o", dest="out", required=True, help="the source package directory")
    dp.add_argument("--json", action="store_true")
    dp.set_defaults(func=_debian_package)

    mc = sub.add_parser("microcode", help="the early microcode cpio alone (a boot loader's "
                        "first initrd, kernel-install's microcode file, a UKI's .ucode)")
    mc.add_argument("-c", "--config", help="TOML configuration file (release, mirror, lock)")
    mc.add_argument("--host", action="store_true", help="only this machine's CPU")
    mc.add_argument("--installed", nargs="?", const="/", metavar="ROOT",
                    help="from the microcode packages installed under ROOT (default /) instead "
                    "of the archive")
    for key in ("release", "arch", "mirror", "components", "keyring", "lock", "locked",
                "offline", "deb_dir"):
        config.add_argument(mc, key)
    mc.add_argument("-o", dest="out", default="microcode.cpio")
    mc.add_argument("--json", action="store_true")
    mc.set_defaults(func=_microcode)

    a = sub.add_parser("addon", help="a UKI addon carrying extra kernel command line")
    a.add_argument("--cmdline", required=True)
    a.add_argument("--release", default="trixie", help="the release whose stub to use")
    a.add_argument("--arch", default="amd64")
    _pe_output_args(a, "cmdline.addon.efi")
    a.set_defaults(func=_addon)

    c = sub.add_parser("credential", help="make a systemd credential (or --show one)")
    c.add_argument("name", help="credential name, e.g. passwd.hashed-password.root (with "
                   "--show: the credential file)")
    c.add_argument("--value", help="the credential's value")
    c.add_argument("--value-from-file", metavar="FILE", help="read the value from FILE")
    c.add_argument("--encrypt", default="null", choices=["null", "host", "tpm2", "host+tpm2"],
                   help="key: null (integrity only, for machines without TPM), host, tpm2 "
                   "(sealed to the TPM's storage key), host+tpm2")
    c.add_argument("--tpm2-device", metavar="DEV", help="the TPM to seal to: /dev/tpmrm0 "
                   "(default) or swtpm:path=SOCKET")
    c.add_argument("--tpm2-primary", metavar="FILE", help="seal without the TPM, to the storage "
                   "key saved from it with `rdforge tpm2-primary`")
    c.add_argument("--tpm2-pcrs", default="", metavar="PCRS", help="bind to PCRs: 7+11, with "
                   "values from the TPM, or 7:sha256=HEX (needed with --tpm2-primary)")
    c.add_argument("--tpm2-public-key", metavar="PEM", help="also bind to PCR policies signed "
                   "by this key (the public half of `rdforge uki --pcr-key`): the credential "
                   "opens only under a UKI whose measured PCR 11 that key signed")
    c.add_argument("--tpm2-public-key-pcrs", default="11", metavar="PCRS",
                   help="the PCRs the signed policies cover (default: 11)")
    c.add_argument("--host-secret", metavar="FILE", help="the target's credential.secret")
    c.add_argument("--not-after", type=int, metavar="EPOCH", help="invalid after this time")
    c.add_argument("--show", action="store_true", help="decrypt NAME (a file) and describe it")
    c.add_argument("--json", action="store_true")
    c.add_argument("-o", dest="output", help="output file (default NAME.cred)")
    c.set_defaults(func=_credential)

    t = sub.add_parser("tpm2-primary", help="save a TPM's storage key, to seal credentials "
                       "for it elsewhere (rdforge credential --tpm2-primary)")
    t.add_argument("--tpm2-device", metavar="DEV", help="/dev/tpmrm0 (default) or "
                   "swtpm:path=SOCKET")
    t.add_argument("-o", dest="output", required=True, help="output file (TPM2B_PUBLIC)")
    t.set_defaults(func=_tpm2_primary)
    return p


# Exit codes: argparse's 2 for usage errors; 1 for work that failed (one line on stderr);
# 130 for an interrupt; 141 when the reader of our output went away (`inspect | head`).
FAILED, INTERRUPTED, BROKEN_PIPE = 1, 130, 141


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    debug = bool(getattr(ns, "debug", False) or os.environ.get("RDFORGE_DEBUG"))
    try:
        rc: int = ns.func(ns)
        return rc
    except RdforgeError as e:
        print(f"rdforge: error: {e}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("rdforge: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # Nothing more can be written there; keep the interpreter's exit from trying.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
    except OSError as e:
        if debug:
            raise
        if e.errno == errno.ENOSPC:
            print(f"rdforge: error: no space left on device ({e.filename or ''})", file=sys.stderr)
        else:
            where = f"{e.filename}: " if e.filename else ""
            print(f"rdforge: error: {where}{e.strerror or e}", file=sys.stderr)
        return FAILED
    except MemoryError:
        print("rdforge: error: out of memory", file=sys.stderr)
        return FAILED
    except Exception as e:  # a bug: say so in one line; the traceback on request
        if debug:
            raise
        print(f"rdforge: internal error: {type(e).__name__}: {e} (this is a bug in rdforge; "
              "please report it with the traceback that --debug or RDFORGE_DEBUG=1 prints)",
              file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
