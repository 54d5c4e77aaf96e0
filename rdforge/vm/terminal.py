"""The answers a serial terminal gives. `rdforge boot` stands where a terminal emulator
would be on the guest's serial console, and answers cursor position requests as one does.

systemd asks for the cursor position to learn the console's size (it moves the cursor far to
the bottom right and asks where it ended up). A pipe never answers: systemd then waits a
third of a second for the reply, at every such probe. A terminal answers at once."""

from __future__ import annotations

import codecs
import re

# Cursor positioning (ESC [ row ; col H) and the cursor position request (ESC [ 6 n).
_SEQUENCE = re.compile(rb"\x1b\[(?:(\d*)(?:;(\d*))?H|(6n))")
# Control sequences (CSI, OSC) and carriage returns: what a log of the console leaves out;
# and the start of such a sequence at the very end of what has come so far, which the next
# read finishes.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
UNFINISHED = re.compile(r"\x1b(?:\[[0-9;?]*|\][^\x07]*)?\Z")
_UNFINISHED_BYTES = re.compile(UNFINISHED.pattern.encode())


class Terminal:
    """Follows the cursor through explicit positioning (clamped to the screen, as a
    terminal does) and answers each position request with a cursor position report."""

    def __init__(self, rows: int = 24, columns: int = 80) -> None:
        self.rows, self.columns = rows, columns
        self.row, self.column = 1, 1
        self._carry = b""

    def answers(self, output: bytes) -> bytes:
        """The reports for the requests in this piece of console output, in order."""
        data = self._carry + output
        replies = b""
        end = 0
        for m in _SEQUENCE.finditer(data):
            if m.group(3):
                replies += b"\x1b[%d;%dR" % (self.row, self.column)
            else:
                self.row = min(max(int(m.group(1) or 1), 1), self.rows)
                self.column = min(max(int(m.group(2) or 1), 1), self.columns)
            end = m.end()
        cut = _UNFINISHED_BYTES.search(data, end)
        self._carry = data[cut.start():] if cut else b""
        return replies


class ConsoleText:
    """The console's output as text without control sequences, piece by piece as the pipe
    delivers it: a character or a sequence cut in two by a read is kept until the rest comes,
    so that neither ends up in the text."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, output: bytes) -> str:
        text = self._pending + self._decoder.decode(output)
        m = UNFINISHED.search(text)
        text, self._pending = (text[:m.start()], text[m.start():]) if m else (text, "")
        return ANSI.sub("", text)
