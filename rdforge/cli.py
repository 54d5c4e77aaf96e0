"""Command line: the parser (flags from the settings table) and main(), which runs one of
rdforge.commands and turns every error into one line and an exit code."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from rdforge import __version__, commands, config
from rdforge.errors import RdforgeError


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
    b.set_defaults(func=commands.cmd_build)

    i = sub.add_parser("inspect", help="what an initrd, UKI or system extension contains: a "
                       "summary, a file list, one file, or all of it extracted")
    i.add_argument("image", help="an initrd (any segments, also dracut's or mkinitramfs'), a "
                   "UKI or addon, a sysext/confext DDI, or a credential")
    i.add_argument("--check", action="store_true", help="run the static check on it")
    what = i.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="every path with type, mode, owner, "
                      "size and link target (of a UKI: of the initrd inside)")
    what.add_argument("--file", metavar="PATH", help="write one file's content to stdout")
    what.add_argument("--extract", metavar="DIR", help="unpack into DIR (new or empty), "
                      "without root: no device nodes, set-ID bits or owners")
    i.add_argument("--json", action="store_true", help="print the summary, the list or the "
                   "extraction's counts as JSON")
    i.set_defaults(func=commands.cmd_inspect)

    d = sub.add_parser("diff", help="what changed between two initrds, UKIs or system "
                       "extensions: packages, files, modules, firmware, UKI sections, root hash")
    d.add_argument("a", help="the older image")
    d.add_argument("b", help="the newer image")
    d.add_argument("--json", action="store_true", help="print the differences as JSON")
    d.set_defaults(func=commands.cmd_diff)

    x = sub.add_parser("explain", help="why a path is in an initrd or UKI (the package or "
                       "fix-up, and the rule that pulled it in), or why it is not")
    x.add_argument("image", help="an initrd or UKI rdforge built (its manifest beside it)")
    x.add_argument("path", help="a path inside the image, e.g. /usr/lib/modules/KVER/.../dm-crypt.ko")
    x.add_argument("--manifest", metavar="FILE", help="the build's manifest, if not beside the "
                   "image (for a UKI: its initrd's, IMAGE.manifest.json of `rdforge build`)")
    x.add_argument("--json", action="store_true", help="print the answer as JSON")
    x.set_defaults(func=commands.cmd_explain)

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
    v.set_defaults(func=commands.cmd_boot)

    g = sub.add_parser("genkey", help="make an RSA signing key and a self-signed certificate")
    g.add_argument("--name", required=True, help="the certificate's common name")
    g.add_argument("-o", dest="output", default="keys", help="directory for key.pem and cert.pem")
    g.add_argument("--bits", type=int, default=2048, choices=[2048, 3072, 4096])
    g.add_argument("--force", action="store_true", help="replace an existing key.pem and "
                   "cert.pem (a key enrolled in firmware or in a signed image's trust is lost)")
    g.set_defaults(func=commands.cmd_genkey)

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
    x.set_defaults(func=commands.cmd_sysext)

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
    u.set_defaults(func=commands.cmd_uki)

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
    up.set_defaults(func=commands.cmd_update, action="update")

    ki = sub.add_parser("kernel-install-add", help="what the kernel-install plugin "
                        "50-rdforge.install runs (reads KERNEL_INSTALL_* from kernel-install)")
    ki.add_argument("kver")
    ki.add_argument("image")
    ki.add_argument("initrds", nargs="*")
    ki.set_defaults(func=commands.cmd_kernel_install_add)

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
    sg.set_defaults(func=commands.cmd_sign)
    at = sub.add_parser("attach", help="attach a detached signature to the unsigned image it "
                        "was made for (as sbattach --attach)")
    at.add_argument("image")
    at.add_argument("signature")
    at.add_argument("-o", dest="output", help="default: the image itself")
    at.add_argument("--json", action="store_true")
    at.set_defaults(func=commands.cmd_attach)

    dp = sub.add_parser("debian-package", help="write the source package of a vendor initrd "
                        "(linux-initrd-KVER: /usr/lib/modules/KVER/initrd, optionally a UKI)")
    dp.add_argument("-c", "--config", required=True, help="the initrd's TOML configuration")
    dp.add_argument("--lock", help="its lock (default: beside the configuration)")
    dp.add_argument("--version", default="1", help="the package version (default 1)")
    dp.add_argument("--maintainer", default="rdforge maintainers <maintainers@rdforge.invalid>")
    dp.add_argument("--uki-cmdline", help="also an unsigned UKI with this command line")
    dp.add_argument("-o", dest="out", required=True, help="the source package directory")
    dp.add_argument("--json", action="store_true")
    dp.set_defaults(func=commands.cmd_debian_package)

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
    mc.set_defaults(func=commands.cmd_microcode)

    a = sub.add_parser("addon", help="a UKI addon carrying extra kernel command line")
    a.add_argument("--cmdline", required=True)
    a.add_argument("--release", default="trixie", help="the release whose stub to use")
    a.add_argument("--arch", default="amd64")
    _pe_output_args(a, "cmdline.addon.efi")
    a.set_defaults(func=commands.cmd_addon)

    c = sub.add_parser("credential", help="make a systemd credential (or --show one)")
    c.add_argument("name", help="credential name, e.g. passwd.hashed-password.root (with "
                   "--show: the credential file)")
    c.add_argument("--value", help="the credential's value")
    c.add_argument("--value-from-file", metavar="FILE", help="read the value from FILE")
    c.add_argument("--encrypt", default="null",
                   choices=["null", "host", "tpm2", "host+tpm2", "auto"],
                   help="key: null (integrity only, for machines without TPM), host, tpm2 "
                   "(sealed to the TPM's storage key), host+tpm2, or auto: the strongest the "
                   "target's facts given here allow (its TPM by --tpm2-device or "
                   "--tpm2-primary, its --host-secret), as systemd-creds picks on a machine")
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
    c.set_defaults(func=commands.cmd_credential)

    t = sub.add_parser("tpm2-primary", help="save a TPM's storage key, to seal credentials "
                       "for it elsewhere (rdforge credential --tpm2-primary)")
    t.add_argument("--tpm2-device", metavar="DEV", help="/dev/tpmrm0 (default) or "
                   "swtpm:path=SOCKET")
    t.add_argument("-o", dest="output", required=True, help="output file (TPM2B_PUBLIC)")
    t.set_defaults(func=commands.cmd_tpm2_primary)
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
