"""Key presses on the VM's PS/2 keyboard, for prompts on a virtual terminal (the serial
console's input is typed as text instead). The keys are the keyboard's physical keys by
qemu's names (`y`, `slash`, `shift-a`, `ret`): which character each one gives is the guest's
keymap's business, which is what a keymap test needs."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from rdforge.errors import BootError

PROMPT = b"(qemu) "


def qemu_args(monitor: Path) -> list[str]:
    """A VGA card for the virtual terminals (the kernel's VGA text console; the PS/2 keyboard
    comes with the machine) and qemu's human monitor on a socket, to press keys with."""
    return ["-device", "VGA", "-monitor", f"unix:{monitor},server=on,wait=off"]


def _read_prompt(s: socket.socket, timeout: float) -> None:
    buf = b""
    end = time.monotonic() + timeout
    while not buf.endswith(PROMPT):
        s.settimeout(max(0.1, end - time.monotonic()))
        try:
            chunk = s.recv(4096)
        except TimeoutError:
            raise BootError("qemu's monitor did not answer") from None
        if not chunk:
            raise BootError("qemu's monitor closed the connection")
        buf += chunk


def press(monitor: Path, keys: str, hold_ms: int = 80, gap: float = 0.08) -> None:
    """Press each key of the space-separated list in turn."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(monitor))
        except OSError as e:
            raise BootError(f"qemu's monitor {monitor}: {e.strerror}") from None
        _read_prompt(s, 10)
        for key in keys.split():
            s.sendall(f"sendkey {key} {hold_ms}\n".encode())
            _read_prompt(s, 10)
            time.sleep(gap + hold_ms / 1000)
