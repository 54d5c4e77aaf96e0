"""`rdforge boot`: start qemu with a kernel and an initrd, stream the serial console, and
decide from what it shows whether the boot reached its goal."""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rdforge.errors import BootError
from rdforge.sources.cache import cache_root
from rdforge.tree.kmods import find_kernel
from rdforge.vm import keyboard
from rdforge.vm.rootfs import LABEL, MARKER
from rdforge.vm.terminal import ConsoleText, Terminal

# Console lines that end a boot as failed, with the reason reported.
FAILURES: tuple[tuple[str, str], ...] = (
    (r"Kernel panic - not syncing[^\r\n]*", "kernel panic"),
    (r"You are in emergency mode|Entering emergency mode|emergency\.target|"
     r"Cannot open access to console, the root account is locked|"
     r"Give root password for maintenance", "the initrd fell back to the emergency shell"),
    (r"Timed out waiting for device[^\r\n]*", "timed out waiting for a device"),
    (r"failed to load Boot\d+ [^\r\n]*: (?:Access Denied|Security Violation)",
     "the firmware refused the boot loader (Secure Boot)"),
    (r"No bootable option or device was found", "the firmware found nothing to boot"),
)
PHASES: tuple[tuple[str, str], ...] = (
    ("kernel", r"Linux version \d"),
    ("initrd", r"Run /init as init process"),
    ("systemd", r"systemd \d+\S* running in system mode"),
    ("udevd", r"Started .*Device Events and Files"),
    ("root-device", r"Reached target .*Initrd Root Device"),
    ("root-mounted", r"Reached target .*Initrd Root File System"),
    ("initrd.target", r"Reached target .*Initrd Default Target"),
    # Status lines shorten long unit names to the console width; the description stays.
    ("switch-root", r"Starting .*Switch Root|Switching root\."),
    ("root", MARKER),
)




def _env_cpus() -> int:
    v = os.environ.get("RDFORGE_VM_CPUS", "")
    return int(v) if v.isdigit() and int(v) > 0 else 2


@dataclass
class BootOptions:
    initrd: Path | None = None
    uki: Path | None = None  # boot this UKI from an ESP with OVMF instead of -kernel/-initrd
    esp_extra: tuple[Path, ...] = ()  # files for the UKI's extra.d folder (.cred, .raw, .efi)
    esp_tree: Path | None = None  # or boot an ESP holding this tree (systemd-boot and entries)
    # or boot this ESP image, written in place (the guest's kernel-install adds to it, for
    # the next boot to see)
    esp_image: Path | None = None
    # The ESP and the root image as partitions of one GPT disk, the root typed for
    # systemd-gpt-auto-generator (the UKI's command line then needs no root=).
    gpt_auto: bool = False
    secure_boot_vars: Path | None = None  # an OVMF variable store with Secure Boot keys
    secure_boot_cert: Path | None = None  # or: Secure Boot on, with this certificate in db
    kernel: Path | None = None
    kernel_version: str = ""
    root_image: Path | None = None
    # More disks after the root (virtio, serial numbers disk1, disk2, ...): RAID members,
    # physical volumes. Writes go to a temporary overlay unless disks_writable (which also
    # applies to the root image).
    disks: tuple[Path, ...] = ()
    disk_serials: tuple[str, ...] = ()  # serial numbers for those disks instead
    disks_writable: bool = False
    root_from_packages: bool = False
    root_fs: str = "ext4"
    disk_bus: str = "virtio"
    append: str = ""
    root_arg: str = f"root=LABEL={LABEL}"
    expect: str | None = None
    expect_fail: tuple[str, ...] = ()  # extra texts that mean failure
    timeout: float = 300
    log: Path | None = None
    echo: bool = True
    release: str = "trixie"
    memory_mb: int = 1536
    extra_qemu: tuple[str, ...] = ()
    console_input: tuple[tuple[str, str], ...] = ()  # (wait for text, then type this)
    # (wait for text on the serial console, then press these keys: qemu's key names, spaced)
    # on the PS/2 keyboard; the VM gets a VGA card for its virtual terminals.
    vt_keys: tuple[tuple[str, str], ...] = ()
    luks_passphrase: str = ""  # wrap the root in LUKS2 with this passphrase ...
    luks_type: bool = True  # ... and type it at the prompt (not when a credential unlocks it)
    sysexts: tuple[Path, ...] = ()  # handed over as /.extra/sysext/*.raw
    credentials: tuple[Path, ...] = ()  # handed over as /.extra/credentials/*.cred
    smbios_credentials: tuple[str, ...] = ()  # NAME=VALUE, as SMBIOS type 11 strings
    forwards: tuple[tuple[int, int], ...] = ()  # (host port, guest port): user networking
    tpm_state: Path | None = None  # attach a TPM 2.0 (swtpm) keeping its state in this dir
    # Called once `expect` appeared, while the VM still runs (to log in over SSH, say);
    # its (ok, reason) is the boot's result.
    while_running: Callable[[], tuple[bool, str]] | None = None
    stop_on_fail: bool = True
    # Once the kernel writes to the console, it reaches /init within seconds even under
    # emulation; this long a silence before /init is a stalled emulator, not a slow image.
    stall_seconds: float = 60
    # Virtual CPUs; RDFORGE_VM_CPUS sets the default. Under emulation on a machine running
    # as many VMs as it has cores (the test suite on 2 cores), one each is about 10% faster.
    cpus: int = field(default_factory=_env_cpus)


@dataclass
class BootResult:
    ok: bool
    reason: str
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    console: str = ""
    accel: str = "tcg"
    guest_uptime: float | None = None

    def to_json(self) -> dict[str, object]:
        tail = self.console.splitlines()[-40:]
        return {"ok": self.ok, "reason": self.reason, "seconds": round(self.seconds, 2),
                "accel": self.accel, "phases": self.phases, "guest_uptime": self.guest_uptime,
                "console_tail": tail}


def kvm_works() -> bool:
    """KVM only when /dev/kvm exists and a guest actually runs on it (nested or paravirtual
    KVM may accept the ioctl and still fail); the verdict is cached per host boot."""
    if os.environ.get("RDFORGE_ACCEL") in ("tcg", "kvm"):
        return os.environ["RDFORGE_ACCEL"] == "kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    verdict = cache_root() / "kvm" / boot_id
    if verdict.exists():
        return verdict.read_text() == "yes"
    ok = False
    try:
        r = subprocess.run(["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-display",
                            "none", "-nodefaults", "-no-reboot", "-bios", "/dev/null", "-S",
                            "-machine", "q35"], timeout=3, capture_output=True)
        ok = r.returncode == 0
    except subprocess.TimeoutExpired:
        ok = False  # even an idle start should not hang; treat as unusable
    except OSError:
        ok = False
    verdict.parent.mkdir(parents=True, exist_ok=True)
    verdict.write_text("yes" if ok else "no")
    return ok


def disk_args(image: Path, bus: str, writable: bool = False) -> list[str]:
    drive = f"file={image},format=raw,if=none,id=root" + ("" if writable else ",snapshot=on")
    dev = {
        "virtio": ["-device", "virtio-blk-pci,drive=root"],
        "nvme": ["-device", "nvme,drive=root,serial=rdforge0"],
        "ahci": ["-device", "ahci,id=ahci0", "-device", "ide-hd,drive=root,bus=ahci0.0"],
        "scsi": ["-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=root"],
        "usb": ["-device", "qemu-xhci,id=xhci", "-device", "usb-storage,drive=root"],
    }
    if bus not in dev:
        raise BootError(f"unknown disk bus {bus!r}")
    return ["-drive", drive] + dev[bus]


OVMF_DIR = Path("/usr/share/OVMF")


def kernel_args(opts: BootOptions, kernel: Path, initrd: Path, root: Path | None) -> list[str]:
    # printk.devkmsg=on: messages programs write to the kernel log are what the harness
    # reads; the kernel's default rate limit would drop some of them on a busy machine.
    cmdline = " ".join(x for x in ("console=ttyS0", "panic=-1", "printk.devkmsg=on",
                                    opts.root_arg if root else "",
                                    "rw", opts.append) if x)
    return ["-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]


def uefi_args(esp: Path, vars_copy: Path, secure: bool, writable: bool = False) -> list[str]:
    code = OVMF_DIR / ("OVMF_CODE_4M.secboot.fd" if secure else "OVMF_CODE_4M.fd")
    if not code.exists():
        raise BootError(f"{code} is missing (apt-get install ovmf)")
    args = ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            "-drive", f"file={esp},format=raw,if=none,id=esp" + ("" if writable else ",snapshot=on"),
            "-device", "virtio-blk-pci,drive=esp,bootindex=0"]
    if secure:
        args += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    return args


def qemu_command(opts: BootOptions, boot_args: list[str], root: Path | None, accel: str,
                 secure: bool = False) -> list[str]:
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise BootError("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    machine = "q35,smm=on" if secure else "q35"
    cmd = [qemu, "-machine", machine, "-m", str(opts.memory_mb), "-smp", str(opts.cpus), "-nodefaults",
           "-display", "none", "-serial", "stdio", "-no-reboot", *boot_args,
           "-device", "virtio-rng-pci"]
    cmd += ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi"]
    if root is not None:
        cmd += disk_args(root, opts.disk_bus, opts.disks_writable)
    snap = "" if opts.disks_writable else ",snapshot=on"
    for i, extra in enumerate(opts.disks, 1):
        serial = opts.disk_serials[i - 1] if i <= len(opts.disk_serials) else f"disk{i}"
        cmd += ["-drive", f"file={extra},format=raw,if=none,id=disk{i}{snap}",
                "-device", f"virtio-blk-pci,drive=disk{i},serial={serial}"]
    if opts.forwards:
        fwd = "".join(f",hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in opts.forwards)
        cmd += ["-nic", f"user,model=virtio-net-pci{fwd}"]
    for cred in opts.smbios_credentials:
        name, sep, value = cred.partition("=")
        if not sep or not name:
            raise BootError(f"--set-credential {cred!r}: expected NAME=VALUE")
        # Base64 in the binary form: values may hold commas, which qemu would split on.
        b64 = base64.b64encode(value.encode()).decode()
        cmd += ["-smbios", f"type=11,value=io.systemd.credential.binary:{name}={b64}"]
    return cmd + list(opts.extra_qemu)


@functools.cache
def busybox_deb(release: str = "trixie") -> Path:
    """The release's busybox-static package (verified, from the cache): test roots run it.
    Looked up once per process: every layout boot asks for it (its roots' cache keys)."""
    from rdforge.config import Config
    from rdforge.sources.fetch import fetch_all
    from rdforge.sources.plan import load_universe

    src = load_universe(Config(release=release))
    pkg = src.universe.candidates.get("busybox-static")
    if pkg is None:
        raise BootError("the archive has no busybox-static for a test root")
    return fetch_all([pkg], False)[0]


def default_root(opts: BootOptions) -> Path:
    from rdforge.vm.rootfs import make_root_image

    return make_root_image(busybox_deb(opts.release), opts.root_fs)


def boot(opts: BootOptions) -> BootResult:
    if opts.uki is None and opts.initrd is None and opts.esp_tree is None \
            and opts.esp_image is None:
        raise BootError("give an initrd (with a kernel), a UKI or an ESP tree to boot")
    for what, path in (("initrd", opts.initrd), ("UKI", opts.uki)):
        if path is not None and not path.exists():
            raise BootError(f"{path}: no such {what}")
    root = opts.root_image
    if root is None and opts.root_from_packages:
        root = default_root(opts)
    if opts.luks_passphrase:
        if root is None:
            raise BootError("a LUKS root needs a root image (--root-image or --root-from-packages)")
        from rdforge.vm.rootfs import LUKS_NAME, LUKS_UUID, make_luks_root_image

        root = make_luks_root_image(root, opts.luks_passphrase)
        opts.root_arg = f"rd.luks.name={LUKS_UUID}={LUKS_NAME} root=/dev/mapper/{LUKS_NAME}"
        if opts.luks_type:
            # After any input the caller queued (a test may type a wrong passphrase first).
            opts.console_input = (*opts.console_input,
                                  ("passphrase for disk", opts.luks_passphrase + "\n"))
    accel = "kvm" if kvm_works() else "tcg"
    with tempfile.TemporaryDirectory(prefix="rdforge-boot-") as tmp:
        if opts.uki is not None or opts.esp_tree is not None or opts.esp_image is not None:
            from rdforge.vm.esp import make_esp, make_esp_from_tree

            # The UKI carries its own command line (root=, console=): --append does not apply.
            extras = [*opts.esp_extra, *opts.sysexts, *opts.credentials]
            if opts.uki is not None:
                esp = make_esp(opts.uki, extras, Path(tmp, "esp.img"))
            elif opts.esp_image is not None:
                esp = opts.esp_image
            else:
                assert opts.esp_tree is not None
                esp = make_esp_from_tree(opts.esp_tree, Path(tmp, "esp.img"))
            vars_copy = Path(tmp, "vars.fd")
            if opts.secure_boot_cert is not None:
                from rdforge.vm.esp import secure_boot_vars

                secure_boot_vars(opts.secure_boot_cert, vars_copy)
            else:
                shutil.copyfile(opts.secure_boot_vars or OVMF_DIR / "OVMF_VARS_4M.fd", vars_copy)
            secure = opts.secure_boot_vars is not None or opts.secure_boot_cert is not None
            if opts.gpt_auto:
                if root is None:
                    raise BootError("a discoverable root partition needs a root image")
                from rdforge.vm.esp import make_gpt_disk

                esp, root = make_gpt_disk(esp, root, Path(tmp, "disk.img")), None
            cmd = qemu_command(opts, uefi_args(esp, vars_copy, secure, esp == opts.esp_image),
                               root, accel, secure)
            return _run(opts, cmd, accel)
        assert opts.initrd is not None
        kernel = opts.kernel or find_kernel(opts.initrd, opts.kernel_version)
        initrd = opts.initrd
        if opts.sysexts or opts.credentials:
            from rdforge.formats.extra import append_extra, extra_cpio

            initrd = Path(tmp, "initrd-with-extra.img")
            initrd.write_bytes(append_extra(opts.initrd.read_bytes(),
                                            extra_cpio(list(opts.sysexts), list(opts.credentials))))
        return _run(opts, qemu_command(opts, kernel_args(opts, kernel, initrd, root), root, accel),
                    accel)


def start_swtpm(state: Path, sock: Path, server: bool = False) -> subprocess.Popen[bytes]:
    """A software TPM 2.0 for qemu; its state directory persists across boots. With server,
    it takes TPM commands on sock itself (its control channel on sock.ctrl), the way tools
    on the host talk to it (`swtpm:path=SOCK`), e.g. to seal credentials to it."""
    exe = shutil.which("swtpm")
    if exe is None:
        raise BootError("swtpm is not installed (apt-get install swtpm)")
    state.mkdir(parents=True, exist_ok=True)
    chans = (["--server", f"type=unixio,path={sock}", "--ctrl", f"type=unixio,path={sock}.ctrl"]
             if server else ["--ctrl", f"type=unixio,path={sock}"])
    proc = subprocess.Popen([exe, "socket", "--tpm2", "--tpmstate", f"dir={state}", *chans,
                             "--flags", "startup-clear"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        if sock.exists():
            return proc
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise BootError(f"swtpm failed to start: {err.strip()}")
        time.sleep(0.05)
    proc.kill()
    raise BootError("swtpm did not create its socket")


def tpm_args(sock: Path) -> list[str]:
    return ["-chardev", f"socket,id=chrtpm,path={sock}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
            "-device", "tpm-tis,tpmdev=tpm0"]


STALLED = "the kernel stalled before /init"
RCU_STALL = re.compile(r"rcu: INFO: rcu_\w+ detected stalls")


QEMU_CRASHED = "qemu crashed"


# Linux patches its own text (static keys, alternatives) by writing int3 first, and under
# multi-threaded TCG another vCPU can still run a stale translation of it once the patch is
# done: the kernel reports a breakpoint trap, or an invalid opcode at an instruction that is
# not the ud2 of BUG(), in its own code. No image causes that, at any point of the boot.
def _text_patch_race(console: str) -> bool:
    """The kernel oopsed on the emulator's text patching race (see above)."""
    if "Oops: int3: " in console:
        return True
    return "Oops: invalid opcode: " in console and "kernel BUG at" not in console \
        and "<0f> 0b" not in console


def _emulator_fault(res: BootResult) -> str | None:
    """What went wrong, when a failed boot failed on software emulation's own flakiness and
    not on the image: the text patching race at any point, or a kernel that died or hung
    before it ran anything of the image."""
    if res.ok:
        return None
    if _text_patch_race(res.console):
        return "the first boot hit the emulator's kernel text patching race"
    if "initrd" not in res.phases:
        if res.reason.startswith(STALLED):
            return "the first boot stalled before /init"
        if "Kernel panic - not syncing" in res.console:
            return "the first boot panicked before /init"
    return None


def _run_emulator_faults_retried(opts: BootOptions, cmd: list[str], accel: str) -> BootResult:
    res = _run_once(opts, cmd, accel)
    fault = _emulator_fault(res)
    if fault is None:
        return res
    # Once more, and say so.
    again = _run_once(opts, cmd, accel)
    again.reason += f" (after a retry: {fault}: {res.reason})"
    return again


def _run(opts: BootOptions, cmd: list[str], accel: str) -> BootResult:
    res = _run_emulator_faults_retried(opts, cmd, accel)
    if not res.ok and res.reason.startswith(QEMU_CRASHED):
        # qemu itself died on a signal (a crash of the emulator, at any point of the boot):
        # no verdict on the image. Once more, and say so.
        again = _run_emulator_faults_retried(opts, cmd, accel)
        again.reason += f" (after a retry: {res.reason})"
        return again
    return res


def _run_once(opts: BootOptions, cmd: list[str], accel: str) -> BootResult:
    with tempfile.TemporaryDirectory(prefix="rdforge-vm-") as tmp:
        monitor = None
        if opts.vt_keys:
            monitor = Path(tmp, "monitor.sock")
            cmd = cmd + keyboard.qemu_args(monitor)
        if opts.tpm_state is None:
            return _run_qemu(opts, cmd, accel, monitor)
        sock = Path(tmp, "swtpm.sock")
        tpm = start_swtpm(opts.tpm_state, sock)
        try:
            return _run_qemu(opts, cmd + tpm_args(sock), accel, monitor)
        finally:
            tpm.terminate()
            try:
                tpm.wait(timeout=10)
            except subprocess.TimeoutExpired:
                tpm.kill()


def _exit_reason(code: int, expect: str) -> str:
    if code < 0:
        return f"{QEMU_CRASHED} (signal {-code}) before {expect!r} appeared"
    return f"qemu exited ({code}) before {expect!r} appeared"


def _run_qemu(opts: BootOptions, cmd: list[str], accel: str,
              monitor: Path | None = None) -> BootResult:
    expect = opts.expect or MARKER
    start = time.monotonic()
    phases: dict[str, float] = {}
    console = ""
    logf = open(opts.log, "w") if opts.log else None
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None and proc.stdin is not None
    os.set_blocking(proc.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    inputs = list(opts.console_input)
    keys, keys_from = list(opts.vt_keys), 0
    ok, reason = False, f"timed out after {opts.timeout:.0f}s"
    scan_from = 0
    last_output = start
    worker: concurrent.futures.ThreadPoolExecutor | None = None
    action: concurrent.futures.Future[tuple[bool, str]] | None = None
    line_wait: float | None = None
    terminal, shown = Terminal(), ConsoleText()
    fail_rx = [(re.compile(p), why) for p, why in FAILURES]
    fail_rx += [(re.compile(re.escape(t)), f"console showed {t!r}") for t in opts.expect_fail]
    try:
        while True:
            left = opts.timeout - (time.monotonic() - start)
            if left <= 0:
                if action is not None:
                    ok, reason = False, f"timed out after {opts.timeout:.0f}s while acting on {expect!r}"
                break
            events = sel.select(timeout=min(left, 0.5))
            chunk = b""
            if events:
                try:
                    chunk = proc.stdout.read() or b""
                except BlockingIOError:
                    chunk = b""
            if not chunk and proc.poll() is not None:
                # qemu is gone: an action that finished still gives the result; one that did
                # not, or a marker that never appeared, is a failure.
                if action is not None and action.done():
                    ok, reason = action.result()
                elif line_wait is None:
                    ok, reason = False, _exit_reason(proc.returncode, expect)
                break
            if action is not None and action.done():
                ok, reason = action.result()
                break
            if not chunk:
                if line_wait is not None and time.monotonic() > line_wait:
                    break
                silent = time.monotonic() - last_output
                if "kernel" in phases and "initrd" not in phases and silent > opts.stall_seconds:
                    reason = f"{STALLED}: no console output for {silent:.0f}s"
                    break
                continue
            last_output = time.monotonic()
            replies = terminal.answers(chunk)
            if replies:
                proc.stdin.write(replies)
                proc.stdin.flush()
            if "initrd" not in phases and RCU_STALL.search(chunk.decode("utf-8", "replace")):
                reason = f"{STALLED}: the kernel reported an RCU stall"
                break
            text = shown.feed(chunk)
            console += text
            if opts.echo:
                sys.stderr.write(text)
                sys.stderr.flush()
            if logf:
                logf.write(text)
                logf.flush()
            now = round(time.monotonic() - start, 2)
            for name, rx in PHASES:
                if name not in phases and re.search(rx, console):
                    phases[name] = now
            if inputs and inputs[0][0] in console[scan_from:]:
                scan_from = console.index(inputs[0][0], scan_from) + len(inputs[0][0])
                time.sleep(0.3)
                proc.stdin.write(inputs.pop(0)[1].encode())
                proc.stdin.flush()
            if keys and monitor is not None and keys[0][0] in console[keys_from:]:
                keys_from = console.index(keys[0][0], keys_from) + len(keys[0][0])
                time.sleep(1.0)  # the prompt's program is up; give it time to read the tty
                keyboard.press(monitor, keys.pop(0)[1])
            if expect in console and worker is None:
                ok, reason = True, f"{expect!r} appeared"
                if opts.while_running is None:
                    # The rest of its line (the marker's uptime) may still be on its way.
                    if "\n" in console[console.index(expect):] or (
                            line_wait is not None and time.monotonic() > line_wait):
                        break
                    line_wait = line_wait or time.monotonic() + 2.0
                    continue
                # Keep draining the console while the action runs: a full pipe would stall
                # qemu's main loop, and with it the guest's network.
                worker = concurrent.futures.ThreadPoolExecutor(1)
                action = worker.submit(opts.while_running)
            if opts.stop_on_fail and action is None:
                hit = next(((rx, why) for rx, why in fail_rx if rx.search(console)), None)
                if hit:
                    m = hit[0].search(console)
                    reason = f"{hit[1]}: {m.group(0).strip() if m else ''}"
                    time.sleep(1.0)  # let the reason's context reach the log
                    break
    finally:
        proc.kill()
        proc.wait()
        if worker is not None:
            worker.shutdown(wait=False, cancel_futures=True)
        if logf:
            logf.close()
    m = re.search(re.escape(MARKER) + r" uptime=([\d.]+)", console)
    return BootResult(ok, reason, time.monotonic() - start, phases, console, accel,
                      float(m.group(1)) if m else None)


