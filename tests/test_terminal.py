"""The console harness answers cursor position requests as a serial terminal does."""

from __future__ import annotations

from rdforge.vm.terminal import Terminal

# What systemd writes to learn the console's size: where is the cursor, then move it far to
# the bottom right and ask again.
PROBE = b"\x1b[6n\x1b[32766;32766H\x1b[6n"


def test_size_probe_gets_the_position_then_the_screen_corner() -> None:
    t = Terminal(rows=24, columns=80)
    assert t.answers(b"booting\n" + PROBE) == b"\x1b[1;1R\x1b[24;80R"
    # systemd puts the cursor back where it was; the next probe starts from there.
    assert t.answers(b"\x1b[1;1H\x1b[!p" + PROBE) == b"\x1b[1;1R\x1b[24;80R"


def test_a_sequence_split_between_two_reads_is_answered_once() -> None:
    t = Terminal(rows=30, columns=100)
    assert t.answers(b"text \x1b[5;7H more \x1b[") == b""
    assert t.answers(b"6n tail") == b"\x1b[5;7R"
    assert t.answers(b"\x1b[32766;32") == b""
    assert t.answers(b"766H\x1b[6") == b""
    assert t.answers(b"n") == b"\x1b[30;100R"


def test_other_output_is_not_answered() -> None:
    t = Terminal()
    assert t.answers(b"\x1b[0;32m  OK  \x1b[0m] Reached target\n\x1b[!p\x1b[2J\x1b[H") == b""


def test_console_text_drops_control_sequences_even_when_a_read_cuts_them() -> None:
    from rdforge.vm.terminal import ConsoleText

    c = ConsoleText()
    out = c.feed(b"[FAILED] Failed to start \x1b[0;1;")
    out += c.feed(b"39msystemd-sysext.ser\xe2\x80")  # and a character cut in two
    out += c.feed(b"\xa6\x1b[0m - Merge\r\n\x1b[!pRDFORGE")
    assert out == "[FAILED] Failed to start systemd-sysext.ser\u2026 - Merge\n\x1b[!pRDFORGE"
    # Text after an escape that starts no sequence is not held back.
    assert c.feed(b"\x1b[!p") == "\x1b[!p"
