"""rpm's version order, checked by hand on the cases that define it and against rpm itself
(`rpm.vercmp` in rpm's Lua) on thousands of real version strings."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from rdforge.errors import FormatError
from rdforge.sources.rpmversion import EVR, compare, vercmp

# (a, b, order): each a case where rpm's rules decide something dpkg's would not, or differently.
CASES = [
    ("1.0", "1.0", 0), ("1.0", "2.0", -1), ("2.0.1", "2.0.1a", -1), ("5.5p1", "5.5p10", -1),
    ("10xyz", "10.1xyz", -1), ("xyz10", "xyz.4", 1), ("1.0", "1_0", 0), ("1..0", "1.0", 0),
    ("1.010", "1.9", 1), ("1.0001", "1.1", 0), ("1.a", "1.1", -1), ("a", "1", -1),
    ("1.0~rc1", "1.0", -1), ("1.0~rc1", "1.0~rc2", -1), ("1.0~~", "1.0~", -1), ("1~", "1", -1),
    ("1.0^", "1.0", 1), ("1.0^git1", "1.0", 1), ("1.0^git1", "1.0.1", -1),
    ("1.0^git1", "1.0^git2", -1), ("1.0^git1~pre", "1.0^git1", -1), ("1.0~rc1^git1", "1.0~rc1", 1),
    ("1b.fc17", "1.fc17", -1), ("1.0ab", "1.0b", -1), ("1.0", "1.0.", 0), ("é1", "1", 0),
]


@pytest.mark.parametrize(("a", "b", "order"), CASES)
def test_vercmp_orders_as_rpm_defines(a: str, b: str, order: int) -> None:
    assert vercmp(a, b) == order
    assert vercmp(b, a) == -order


def test_evr_epoch_wins_and_a_dependency_without_release_matches_every_release() -> None:
    assert compare(EVR.parse("1:0.1-1"), EVR.parse("9.9-9")) == 1
    assert compare(EVR.parse("1.2"), EVR.parse("1.2-7.fc41")) == 0
    assert compare(EVR.parse("1.2-7.fc41"), EVR.parse("1.2-10.fc41")) == -1
    assert compare(EVR.parse("1.2-7"), EVR.parse("1.2-10"), releases=False) == 0
    assert EVR.parse(":1.0-2") == EVR(0, "1.0", "2")
    assert EVR.parse("2:1.0-a-b") == EVR(2, "1.0-a", "b")
    assert str(EVR.parse("2:1.0-3")) == "2:1.0-3" and str(EVR.parse("1.0")) == "1.0"
    assert EVR.parse("x:1.0") == EVR(0, "x:1.0", "")  # not an epoch: part of the version
    with pytest.raises(FormatError, match="no version"):
        EVR.parse("1:-3")


def _rpm_vercmp(pairs: list[tuple[str, str]], tmp: Path) -> list[int]:
    """rpm's own answer for each pair, from one rpm process. rpm.vercmp parses each side as
    [epoch:]version[-release] (rpmverCmp) and compares the parts with rpmvercmp."""
    f = tmp / "pairs"
    f.write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    lua = (f'for line in io.lines("{f}") do local a, b = line:match("^(.-)\\t(.*)$"); '
           'print(rpm.vercmp(a, b) .. " ") end')
    out = subprocess.run(["rpm", "--eval", f"%{{lua: {lua}}}"], check=True,
                         capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _real_pairs() -> list[tuple[str, str]]:
    """Every version string of the trixie archive (tens of thousands, with Debian's epochs,
    tildes, plus signs, dates and hashes) beside its neighbour in sorted order and against
    others at random, plus carets, tildes and other characters spliced in."""
    from rdforge.config import Config
    from rdforge.sources.plan import load_universe

    versions = sorted({p.version for p in load_universe(Config()).universe.candidates.values()})
    assert len(versions) > 10000
    rng = random.Random(20261202)
    pairs = list(zip(versions, versions[1:], strict=False))
    pairs += [(rng.choice(versions), rng.choice(versions)) for _ in range(20000)]
    for v in rng.sample(versions, 3000):
        k = rng.randrange(len(v) + 1)
        pairs.append((v, v[:k] + rng.choice("~^.") + v[k:]))
        pairs.append((v, v[:k] + rng.choice(["~", "^", "0", "a", "_", "+"]) + v[k + 1:]))
    return pairs


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which("rpm"), reason="rpm is not installed (setup.sh installs it)")
@pytest.mark.parametrize("what", ["vercmp", "evr"])
def test_agrees_with_rpm_on_real_versions(tmp_path: Path, what: str) -> None:
    """`vercmp`: each string with its `:` and `-` made plain separators, so that rpm compares
    it whole with rpmvercmp. `evr`: the strings as they are, epoch, version and release."""
    pairs = _real_pairs()
    if what == "vercmp":
        pairs = [(a.replace(":", "_").replace("-", "_"), b.replace(":", "_").replace("-", "_"))
                 for a, b in pairs]

        def ours(a: str, b: str) -> int:
            return vercmp(a, b)
    else:
        def ours(a: str, b: str) -> int:
            # rpm.vercmp orders labels: a missing release sorts before any release. compare()
            # matches dependencies, where a missing release matches every one (rpmds.c).
            x, y = EVR.parse(a), EVR.parse(b)
            r = compare(x, y)
            if r == 0 and bool(x.release) != bool(y.release):
                return -1 if not x.release else 1
            return r
    theirs = _rpm_vercmp(pairs, tmp_path)
    assert len(theirs) == len(pairs)
    wrong = [(a, b, r, ours(a, b)) for (a, b), r in zip(pairs, theirs, strict=True)
             if ours(a, b) != r]
    assert wrong == [], wrong[:20]
