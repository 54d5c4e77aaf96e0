"""Rich dependencies parsed as rpm defines them (rpm's doc/manual/boolean_dependencies.md)."""

from __future__ import annotations

import pytest

from rdforge.errors import FormatError
from rdforge.sources.richdep import Atom, Rich, parse


def test_operators_nesting_and_comparisons() -> None:
    assert parse("(a or b or c)") == Rich("or", (Atom("a"), Atom("b"), Atom("c")))
    assert parse("(pam >= 1.1.3-7 or (x if y else z))") == Rich("or", (
        Atom("pam", "GE", "1.1.3-7"), Rich("if", (Atom("x"), Atom("y"), Atom("z")))))
    assert parse("(foo unless bar)") == Rich("unless", (Atom("foo"), Atom("bar")))
    assert parse("(kernel with kernel-core = 6.1)") == Rich("with", (
        Atom("kernel"), Atom("kernel-core", "EQ", "6.1")))
    assert parse("((libfoo.so.1()(64bit)) and /usr/bin/sh)") == Rich("and", (
        Atom("libfoo.so.1()(64bit)"), Atom("/usr/bin/sh")))


@pytest.mark.parametrize("bad", ["(a or b and c)", "(a or", "(a if b else c else d)",
                                 "(a or b))", "(>= 1)", "(a >= )", "a or b", "(a without b without c)"])
def test_malformed_ones_are_refused(bad: str) -> None:
    with pytest.raises(FormatError, match="rich dependency"):
        parse(bad)
