"""The resolver against apt itself: `apt-get install --simulate` for the default package set,
with an empty dpkg status and the same archive (host mirror mapped to trixie)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from rdforge.config import DEFAULT_PACKAGES, Config
from rdforge.sources.plan import archive_sources, load_universe, resolve_set

pytestmark = pytest.mark.integration


def _apt_simulate(tmp: Path, names: list[str]) -> dict[str, str]:
    cfg = Config()
    lines = [f"deb [signed-by={s.keyring or '/usr/share/keyrings/debian-archive-keyring.gpg'}] "
             f"{s.uri} {suite} {' '.join(s.components)}"
             for s in archive_sources(cfg) for suite in s.suites]
    (tmp / "sources.list").write_text("\n".join(lines) + "\n")
    for d in ("lists/partial", "cache/archives/partial"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    (tmp / "status").write_text("")
    opts = ["-o", f"Dir::Etc::SourceList={tmp}/sources.list", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={tmp}/lists", "-o", f"Dir::State::Status={tmp}/status",
            "-o", f"Dir::Cache={tmp}/cache", "-o", "APT::Architecture=amd64",
            "-o", "Dir::Etc::Preferences=/dev/null", "-o", "Dir::Etc::PreferencesParts=/dev/null",
            "-o", "APT::Get::List-Cleanup=false", "-qq"]
    subprocess.run(["apt-get", *opts, "update"], check=True, capture_output=True)
    out = subprocess.run(["apt-get", *opts, "install", "--simulate", "--no-install-recommends",
                          *names], check=True, capture_output=True, text=True).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r"^Inst (\S+) \((\S+)", out, re.M)}


def test_default_set_matches_apt(tmp_path: Path) -> None:
    names = list(DEFAULT_PACKAGES)
    apt = _apt_simulate(tmp_path, names)
    cfg = Config(remove_packages=[], prefer=[])
    ours = {p.name: p.version for p in resolve_set(load_universe(cfg).universe, cfg, names)}
    # Same packages in the same versions. (apt also installs nothing Essential on its own for
    # an empty status with a plain install, so no difference is expected there.)
    assert sorted(set(ours) ^ set(apt)) == []
    assert {n: v for n, v in ours.items() if apt[n] != v} == {}
