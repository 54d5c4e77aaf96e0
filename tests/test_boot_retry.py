"""The boot harness retries once when the kernel dies before it ran anything of the image, or
on the emulator's kernel text patching race (software emulation's own flakiness), and only
then."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from rdforge.vm import boot as vmboot
from rdforge.vm.boot import BootOptions, BootResult
from rdforge.vm.rootfs import MARKER

PANIC = "[ 2.0] Kernel panic - not syncing: Fatal exception in interrupt\n"


def _fake(results: list[BootResult], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def once(opts: BootOptions, cmd: list[str], accel: str) -> BootResult:
        calls.append(1)
        return results[len(calls) - 1]

    monkeypatch.setattr(vmboot, "_run_once", once)
    return calls


def test_panic_before_init_is_retried_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake([BootResult(False, "qemu exited (0)", 3.0, {"kernel": 0.5}, PANIC),
                   BootResult(True, "marker appeared", 9.0, {"initrd": 3.0})], monkeypatch)
    res = vmboot._run(BootOptions(initrd=Path("x")), [], "tcg")
    assert len(calls) == 2 and res.ok
    assert "after a retry" in res.reason and "panicked before /init" in res.reason


def test_panic_after_init_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake([BootResult(False, "kernel panic: x", 5.0, {"initrd": 3.0}, PANIC)], monkeypatch)
    res = vmboot._run(BootOptions(initrd=Path("x")), [], "tcg")
    assert len(calls) == 1 and not res.ok and "retry" not in res.reason


def test_text_patching_race_after_init_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    oops = ("[ 3.3] Run /init as init process\n[ 3.5] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n"
            + PANIC)
    calls = _fake([BootResult(False, "qemu exited (0)", 5.0, {"initrd": 3.0}, oops),
                   BootResult(True, "marker appeared", 9.0, {"initrd": 3.0})], monkeypatch)
    res = vmboot._run(BootOptions(initrd=Path("x")), [], "tcg")
    assert len(calls) == 2 and res.ok and "patching race" in res.reason
    # An invalid opcode at a patched no-op is the same race; BUG()'s ud2 is the kernel's own.
    race = "Oops: invalid opcode: 0000 [#1]\nCode: 90 0f <1f> 44 00 00 9c 58\n"
    bug = "kernel BUG at fs/x.c:1!\nOops: invalid opcode: 0000 [#1]\nCode: 48 <0f> 0b 90\n"
    assert vmboot._text_patch_race(race) and not vmboot._text_patch_race(bug)


def _fake_qemu(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def test_silent_kernel_is_reported_as_stalled_not_left_to_time_out() -> None:
    cmd = _fake_qemu("import sys,time; print('Linux version 6.12', flush=True); time.sleep(30)")
    opts = BootOptions(initrd=Path("x"), echo=False, timeout=20, stall_seconds=1.5)
    t0 = time.monotonic()
    res = vmboot._run_qemu(opts, cmd, "tcg")
    assert not res.ok and res.reason.startswith(vmboot.STALLED)
    assert time.monotonic() - t0 < 10


def test_silence_after_init_is_not_a_stall() -> None:
    # systemd may rightly wait quietly for a device once /init runs.
    cmd = _fake_qemu("import time; print('Linux version 6.12', flush=True);"
                     "print('Run /init as init process', flush=True); time.sleep(30)")
    opts = BootOptions(initrd=Path("x"), echo=False, timeout=4, stall_seconds=1)
    res = vmboot._run_qemu(opts, cmd, "tcg")
    assert not res.ok and res.reason.startswith("timed out")


def test_rcu_stall_before_init_is_reported_as_stalled() -> None:
    cmd = _fake_qemu("import time; print('Linux version 6.12', flush=True);"
                     "print('rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:', flush=True);"
                     "time.sleep(30)")
    opts = BootOptions(initrd=Path("x"), echo=False, timeout=20)
    res = vmboot._run_qemu(opts, cmd, "tcg")
    assert not res.ok and "RCU stall" in res.reason


@pytest.mark.parametrize("first, says", [
    (BootResult(False, f"{vmboot.STALLED}: no console output for 61s", 70.0, {"kernel": 0.5},
                "[ 1.1] pci 0000:00:01.0: BAR 0\n"), "stalled before /init"),
    (BootResult(False, f"{vmboot.QEMU_CRASHED} (signal 11) before 'X' appeared", 9.0,
                {"initrd": 3.0}, ""), "signal 11"),  # a crash at any point
])
def test_emulator_faults_are_retried_once_and_named(first: BootResult, says: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake([first, BootResult(True, "marker appeared", 9.0, {"initrd": 3.0})], monkeypatch)
    res = vmboot._run(BootOptions(initrd=Path("x")), [], "tcg")
    assert len(calls) == 2 and res.ok and says in res.reason
    calls = _fake([first, first], monkeypatch)
    res = vmboot._run(BootOptions(initrd=Path("x")), [], "tcg")
    assert len(calls) == 2 and not res.ok  # twice is not the emulator's bad luck


def test_the_markers_line_is_read_to_its_end() -> None:
    # The serial port may hand the marker over in two pieces: the uptime after it is the
    # boot's time, and the harness waits for it rather than stopping at the marker.
    cmd = _fake_qemu("import sys,time; w=sys.stdout.write; f=sys.stdout.flush;"
                     f"w('Linux version 6.12\\n{MARKER} u'); f(); time.sleep(0.7);"
                     "w('ptime=7.25\\n'); f(); time.sleep(30)")
    res = vmboot._run_qemu(BootOptions(initrd=Path("x"), echo=False, timeout=20), cmd, "tcg")
    assert res.ok and res.guest_uptime == 7.25 and res.seconds < 10
    # A marker whose line never ends is still the boot's success, without the uptime.
    cmd = _fake_qemu("import sys,time; w=sys.stdout.write;"
                     f"w('{MARKER} u'); sys.stdout.flush(); time.sleep(30)")
    res = vmboot._run_qemu(BootOptions(initrd=Path("x"), echo=False, timeout=20), cmd, "tcg")
    assert res.ok and res.guest_uptime is None and res.seconds < 10


def test_an_action_while_running_gives_the_result_even_when_the_vm_then_exits(
        tmp_path: Path) -> None:
    # The VM powers off as soon as the action is done (it waits for the action's file): the
    # harness sees qemu gone and the action finished at once.
    done = tmp_path / "done"
    cmd = _fake_qemu("import os,time; print('ready', flush=True); t=time.time()\n"
                     f"while not os.path.exists({str(done)!r}) and time.time()-t < 10:"
                     " time.sleep(0.02)")

    def quick() -> tuple[bool, str]:
        done.touch()
        return True, "logged in"

    def slow() -> tuple[bool, str]:
        time.sleep(5)
        return True, "logged in"

    opts = BootOptions(initrd=Path("x"), echo=False, timeout=20, expect="ready",
                       while_running=quick)
    res = vmboot._run_qemu(opts, cmd, "tcg")
    assert res.ok and res.reason == "logged in"
    # The VM went away before the action had its answer: that is no success.
    cmd = _fake_qemu("import time; print('ready', flush=True); time.sleep(0.5)")
    opts = BootOptions(initrd=Path("x"), echo=False, timeout=20, expect="ready",
                       while_running=slow)
    res = vmboot._run_qemu(opts, cmd, "tcg")
    assert not res.ok and "exited" in res.reason


def test_a_crashing_emulator_is_named_as_such() -> None:
    cmd = _fake_qemu("import os,signal; print('Linux version 6.12', flush=True);"
                     "os.kill(os.getpid(), signal.SIGSEGV)")
    res = vmboot._run_qemu(BootOptions(initrd=Path("x"), echo=False, timeout=20), cmd, "tcg")
    assert not res.ok and res.reason.startswith(vmboot.QEMU_CRASHED) and "signal 11" in res.reason


def test_phases_are_recognised_on_a_real_console() -> None:
    console = "\n".join((
        "[    0.000000] Linux version 6.12.118+deb13-amd64 (debian-kernel@lists.debian.org)",
        "[    2.850101] Run /init as init process",
        "[    3.031300] systemd[1]: systemd 257.13-1~deb13u1 running in system mode (+PAM +AUDIT",
        "[  OK  ] Started systemd-udevd.service - Rule-based Manager for Device Events and Files.",
        "[  OK  ] Reached target initrd-root-device.target - Initrd Root Device.",
        "[  OK  ] Reached target initrd-root-fs.target - Initrd Root File System.",
        "[  OK  ] Reached target initrd.target - Initrd Default Target.",
        "         Starting initrd-switch-root.service - Switch Root...",
        "RDFORGE-ROOT-REACHED uptime=9.1"))
    assert [name for name, rx in vmboot.PHASES if re.search(rx, console)] == \
        [name for name, _ in vmboot.PHASES]
