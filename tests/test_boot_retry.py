"""The boot harness retries once when the kernel dies before it ran anything of the image
(software emulation's own flakiness), and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdforge.vm import boot as vmboot
from rdforge.vm.boot import BootOptions, BootResult

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
