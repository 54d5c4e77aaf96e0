"""setup.sh on a Debian python3 that refuses pip (PEP 668): rdforge lands in a virtual
environment and runs from there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = Path("/usr/bin/python3")


@pytest.mark.integration
def test_setup_uses_a_venv_where_python_refuses_pip(tmp_path: Path) -> None:
    managed = list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED"))
    if not DEBIAN_PYTHON.exists() or not managed:
        pytest.skip("no Debian python3 marked EXTERNALLY-MANAGED here")
    checkout = tmp_path / "rdforge"
    checkout.mkdir()
    for name in ("setup.sh", "pyproject.toml", "README.md"):
        (checkout / name).write_bytes((ROOT / name).read_bytes())
    (checkout / "setup.sh").chmod(0o755)
    subprocess.run(["cp", "-r", str(ROOT / "rdforge"), str(checkout)], check=True)
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # Debian's python3 first
    refused = subprocess.run([str(DEBIAN_PYTHON), "-m", "pip", "install", "--dry-run", "."],
                             cwd=checkout, env=env, capture_output=True, text=True)
    if refused.returncode == 0:
        pytest.skip("this python3 accepts pip")
    assert "externally-managed" in refused.stderr
    r = subprocess.run(["./setup.sh", "--deps-only"], cwd=checkout, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    venv_py = checkout / ".venv/bin/python3"
    cfg = (checkout / ".venv/pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg
    v = subprocess.run([str(venv_py), "-m", "rdforge.cli", "--version"], capture_output=True,
                       text=True, env=env)
    assert v.returncode == 0 and "rdforge" in v.stdout, v.stderr
    where = subprocess.run([str(venv_py), "-c", "import rdforge; print(rdforge.__file__)"],
                           capture_output=True, text=True, env=env, cwd="/")
    assert where.stdout.strip() == str(checkout / "rdforge/__init__.py")
