"""Shared fixtures: the real trixie archive (cached) and one default build per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rdforge.config import Config


@pytest.fixture(scope="session")
def trixie_packages() -> list:  # type: ignore[type-arg]
    from rdforge.sources.plan import load_universe

    src = load_universe(Config())
    assert src.archive is not None
    return src.archive.packages()


@pytest.fixture(scope="session")
def default_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default initrd, built once per test session (package downloads are cached)."""
    from rdforge.outputs.initrd import build

    d = tmp_path_factory.mktemp("default")
    build(Config(output=str(d / "initrd.img"), lock=str(d / "rdforge.lock")))
    return d / "initrd.img"


@pytest.fixture(scope="session")
def vendor_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A vendor signing key and certificate (rdforge genkey)."""
    from rdforge.keys import genkey

    return genkey("rdforge test vendor", tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def trusted_build(tmp_path_factory: pytest.TempPathFactory, vendor_keys: tuple[Path, Path]) -> Path:
    """The default initrd trusting the vendor certificate for system extensions."""
    from rdforge.outputs.initrd import build

    d = tmp_path_factory.mktemp("trusted")
    build(Config(output=str(d / "initrd.img"), lock=str(d / "rdforge.lock"),
                 trust=[str(vendor_keys[1])]))
    return d / "initrd.img"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Boot tests are slow: give each its own xdist group so they spread over workers.
    for item in items:
        if "boot" in item.keywords and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid))


os.environ.setdefault("RDFORGE_TEST", "1")
