"""The commands: each takes the parsed arguments, calls one function of outputs/ or vm/, and
prints its result. No logic lives here."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from rdforge import config
from rdforge.errors import ConfigError
from rdforge.progress import Progress


def cmd_build(ns: argparse.Namespace) -> int:
    from rdforge.outputs.initrd import build

    cfg = config.load(Path(ns.config) if ns.config else None, config.overrides_from(ns))
    res = build(cfg, Progress(not ns.json and not ns.quiet))
    if ns.json:
        print(json.dumps({"output": str(res.output), "size": res.size, "sha256": res.sha256,
                          "kernel_version": res.kernel_version, "packages": len(res.packages),
                          "modules": res.modules, "files": res.files, "timings": res.timings,
                          "warnings": res.warnings}))
    elif not ns.quiet:
        print(f"{res.output}: {res.size / 1e6:.1f} MB, {len(res.packages)} packages, "
              f"{res.modules} modules for {res.kernel_version}, sha256 {res.sha256[:16]}…")
        for w in res.warnings:
            print(f"rdforge: warning: {w}", file=sys.stderr)
    return 0


def cmd_inspect(ns: argparse.Namespace) -> int:
    from rdforge.outputs import inspect

    if ns.list or ns.file or ns.extract:
        tree = inspect.read_tree(Path(ns.image))
        if ns.file:
            sys.stdout.buffer.write(inspect.file_content(tree, ns.file, Path(ns.image)))
            sys.stdout.buffer.flush()
        elif ns.extract:
            counts = inspect.extract(tree, Path(ns.extract), Path(ns.image))
            print(json.dumps(counts, indent=1) if ns.json else
                  f"{ns.extract}: " + ", ".join(f"{n} {k.replace('_', ' ')}"
                                                for k, n in counts.items()))
        else:
            rows = inspect.list_entries(tree)
            print(json.dumps(rows, indent=1) if ns.json else "\n".join(inspect.list_lines(rows)))
        return 0
    report = inspect.inspect_image(Path(ns.image), check=ns.check)
    lines = report.pop("summary_lines")
    if ns.json:
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(str(x) for x in lines))  # type: ignore[attr-defined]
    chk = report.get("check")
    return 1 if isinstance(chk, dict) and chk.get("problems") else 0


def cmd_diff(ns: argparse.Namespace) -> int:
    from rdforge.outputs.diff import diff_images, diff_lines

    d = diff_images(Path(ns.a), Path(ns.b))
    print(json.dumps(d, indent=1) if ns.json else "\n".join(diff_lines(d)))
    return 0


def cmd_explain(ns: argparse.Namespace) -> int:
    from rdforge.outputs.explain import explain, explain_lines

    d = explain(Path(ns.image), ns.path, Path(ns.manifest) if ns.manifest else None)
    print(json.dumps(d, indent=1) if ns.json else "\n".join(explain_lines(d)))
    return 0


def _forward(spec: str) -> tuple[int, int]:
    host, sep, guest = spec.partition(":")
    if not (sep and host.isdigit() and guest.isdigit()):
        raise ConfigError(f"--forward {spec!r}: expected HOSTPORT:GUESTPORT")
    return int(host), int(guest)


def cmd_boot(ns: argparse.Namespace) -> int:
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


def cmd_genkey(ns: argparse.Namespace) -> int:
    from rdforge.keys import genkey

    key, cert = genkey(ns.name, Path(ns.output), bits=ns.bits, force=ns.force)
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


def cmd_sysext(ns: argparse.Namespace) -> int:
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


def cmd_tpm2_primary(ns: argparse.Namespace) -> int:
    from rdforge.formats import tpm2
    from rdforge.fsutil import write_atomic
    from rdforge.outputs.credential import storage_primary

    pub = storage_primary(ns.tpm2_device, None)
    fp = tpm2.parse_public(pub).fingerprint
    write_atomic(Path(ns.output), pub)
    print(f"{ns.output}: TPM storage key, fingerprint {fp}")
    return 0


def cmd_credential(ns: argparse.Namespace) -> int:
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
    if ns.encrypt == "auto":
        tpm = bool(ns.tpm2_device or ns.tpm2_primary)
        ns.encrypt = ("host+tpm2" if tpm and secret else "tpm2" if tpm else
                      "host" if secret else "null")
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
    if kind == creds.KEY_NULL:
        print(f"rdforge: note: {out} has no key (integrity only): systemd refuses such "
              "credentials on a machine with a TPM2 and Secure Boot on; seal it with "
              "--encrypt tpm2 for those", file=sys.stderr)
    if ns.json:
        print(json.dumps({"path": str(out), "name": ns.name, "size": len(data),
                          "key": ns.encrypt, "tpm2_pcrs": ns.tpm2_pcrs or None}, indent=1))
    else:
        print(f"{out}: credential {ns.name}, {len(data)} bytes, {ns.encrypt} key")
    return 0


def cmd_uki(ns: argparse.Namespace) -> int:
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


def cmd_update(ns: argparse.Namespace) -> int:
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


def cmd_kernel_install_add(ns: argparse.Namespace) -> int:
    from rdforge.outputs.kernel_install import add

    cfg = config.load(None, {})
    verbose = os.environ.get("KERNEL_INSTALL_VERBOSE", "0") not in ("", "0")
    written = add(cfg, ns.kver, Path(ns.image), [Path(p) for p in ns.initrds], Progress(verbose))
    if written and verbose:
        print(f"rdforge: wrote {', '.join(written)} for {ns.kver}", file=sys.stderr)
    return 0


def cmd_debian_package(ns: argparse.Namespace) -> int:
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


def cmd_microcode(ns: argparse.Namespace) -> int:
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


def cmd_sign(ns: argparse.Namespace) -> int:
    from rdforge.outputs.uki import sign_file

    out = Path(ns.output or (ns.image + (".sig" if ns.detached else ".signed")))
    info = sign_file(Path(ns.image), Path(ns.key), Path(ns.cert), out, ns.detached, ns.replace)
    print(json.dumps(info, indent=1) if ns.json else
          f"{info['output']}: {'detached signature' if ns.detached else 'signed image'}, "
          f"{info['size']} bytes")
    return 0


def cmd_attach(ns: argparse.Namespace) -> int:
    from rdforge.outputs.uki import attach_file

    info = attach_file(Path(ns.image), Path(ns.signature), Path(ns.output or ns.image))
    print(json.dumps(info, indent=1) if ns.json else f"{info['output']}: signed, {info['size']} bytes")
    return 0


def cmd_addon(ns: argparse.Namespace) -> int:
    from rdforge.outputs.uki import build_addon

    info = build_addon(ns.cmdline, Path(ns.output), ns.release, ns.arch,
                       Path(ns.key) if ns.key else None, Path(ns.cert) if ns.cert else None,
                       ns.offline)
    print(json.dumps(info, indent=1) if ns.json else f"{info['output']}: addon, {info['size']} bytes")
    return 0
