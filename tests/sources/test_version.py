import random
import subprocess

import pytest

from rdforge.sources.version import compare, satisfies

PAIRS = [
    ("1.0", "1.0-1", -1), ("1:1", "2", 1), ("1.0~rc1", "1.0", -1), ("1.0", "1.0+b1", -1),
    ("2.41-12+deb13u5", "2.41-12", 1), ("1.2a", "1.2+", -1), ("0", "0.0", -1),
    ("1.01", "1.1", 0), ("1.0~~", "1.0~", -1), ("7.6p2-4", "7.6-0", 1),
]


@pytest.mark.parametrize("a,b,sign", PAIRS)
def test_known_pairs(a: str, b: str, sign: int) -> None:
    c = compare(a, b)
    assert (c > 0) - (c < 0) == sign


def test_satisfies() -> None:
    assert satisfies("2.41-12", ">=", "2.38")
    assert not satisfies("2.41-12", "<<", "2.41")
    assert satisfies("257.13-1~deb13u1", "=", "257.13-1~deb13u1")


def _dpkg_sign(a: str, b: str) -> int:
    if subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0:
        return -1
    if subprocess.run(["dpkg", "--compare-versions", a, "eq", b]).returncode == 0:
        return 0
    return 1


@pytest.mark.integration
def test_against_dpkg_on_real_archive_versions(trixie_packages: list) -> None:  # type: ignore[type-arg]
    versions = sorted({p.version for p in trixie_packages})
    rng = random.Random(42)
    pairs = [tuple(rng.sample(versions, 2)) for _ in range(1500)]
    # neighbours in sorted order are the hard cases (close versions)
    pairs += [(versions[i], versions[i + 1]) for i in range(0, len(versions) - 1, 37)][:1500]
    wrong = []
    for a, b in pairs:
        c = compare(a, b)
        if (c > 0) - (c < 0) != _dpkg_sign(a, b):
            wrong.append((a, b))
    assert len(pairs) > 2000
    assert wrong == []
