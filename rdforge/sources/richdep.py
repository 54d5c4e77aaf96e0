"""rpm's rich (boolean) dependencies: `(a or b)`, `(a and b)`, `(a if b)`, `(a if b else c)`,
`(a unless b)`, `(a unless b else c)`, `(a with b)`, `(a without b)`, nested in parentheses,
each operand a name with an optional comparison (`foo >= 1.2`). As rpm parses them
(rpmrichParse): one operator kind per parenthesis, repeated for and/or/with."""

from __future__ import annotations

from dataclasses import dataclass

from rdforge.errors import FormatError

OPERATORS = ("and", "or", "if", "unless", "with", "without")
COMPARISONS = {"=": "EQ", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE"}


@dataclass(frozen=True)
class Atom:
    name: str
    flags: str = ""  # EQ, LT, LE, GT, GE or "" for any version
    evr: str = ""


@dataclass(frozen=True)
class Rich:
    op: str  # one of OPERATORS
    operands: tuple[Node, ...]  # for if/unless: (then, condition) or (then, condition, else)


Node = Atom | Rich


def is_rich(text: str) -> bool:
    return text.startswith("(")


def _tokens(text: str) -> list[str]:
    """Parentheses, operators and names; a name may hold balanced parentheses of its own
    (`libc.so.6()(64bit)`, `config(foo)`), as rpm reads them."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            out.append(c)
            i += 1
        else:
            start, depth = i, 0
            while i < len(text) and not text[i].isspace():
                if text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    if depth == 0:
                        break
                    depth -= 1
                i += 1
            out.append(text[start:i])
    return out


def parse(text: str) -> Node:
    tokens = _tokens(text)
    node, pos = _group(tokens, 0, text)
    if pos != len(tokens):
        raise FormatError(f"rich dependency {text!r}: text after the closing parenthesis")
    return node


def _group(tokens: list[str], pos: int, text: str) -> tuple[Node, int]:
    if pos >= len(tokens) or tokens[pos] != "(":
        raise FormatError(f"rich dependency {text!r}: expected '('")
    first, pos = _operand(tokens, pos + 1, text)
    operands, op = [first], ""
    while pos < len(tokens) and tokens[pos] != ")":
        word = tokens[pos]
        if word == "else" and op in ("if", "unless") and len(operands) == 2:
            nxt, pos = _operand(tokens, pos + 1, text)
            operands.append(nxt)
            continue
        if word not in OPERATORS or (op and word != op) or (op in ("if", "unless", "without")):
            raise FormatError(f"rich dependency {text!r}: unexpected {word!r}")
        op = word
        nxt, pos = _operand(tokens, pos + 1, text)
        operands.append(nxt)
    if pos >= len(tokens):
        raise FormatError(f"rich dependency {text!r}: missing ')'")
    if not op:  # "(foo)" is just foo
        return first, pos + 1
    return Rich(op, tuple(operands)), pos + 1


def _operand(tokens: list[str], pos: int, text: str) -> tuple[Node, int]:
    if pos >= len(tokens):
        raise FormatError(f"rich dependency {text!r}: ends early")
    if tokens[pos] == "(":
        return _group(tokens, pos, text)
    name = tokens[pos]
    if name == ")" or name in OPERATORS or name == "else":
        raise FormatError(f"rich dependency {text!r}: expected a name, found {name!r}")
    if pos + 1 < len(tokens) and tokens[pos + 1] in COMPARISONS:
        if pos + 2 >= len(tokens) or tokens[pos + 2] in ("(", ")"):
            raise FormatError(f"rich dependency {text!r}: {name} {tokens[pos + 1]} lacks a version")
        return Atom(name, COMPARISONS[tokens[pos + 1]], tokens[pos + 2]), pos + 3
    return Atom(name), pos + 1
