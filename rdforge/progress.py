"""Progress lines on stderr for long work (silent with --quiet or --json)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.timings: dict[str, float] = {}
        self._phase = ""
        self._t = self.start

    def phase(self, name: str, detail: str = "") -> None:
        now = time.monotonic()
        if self._phase:
            self.timings[self._phase] = round(now - self._t, 3)
        self._phase, self._t = name, now
        if self.enabled:
            print(f"[{now - self.start:6.1f}s] {name}{': ' + detail if detail else ''}",
                  file=sys.stderr, flush=True)

    def info(self, msg: str) -> None:
        if self.enabled:
            print(f"         {msg}", file=sys.stderr, flush=True)

    def done(self) -> float:
        self.phase("")
        return round(time.monotonic() - self.start, 3)
