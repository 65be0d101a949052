"""The console scripts pyproject declares are installed and run (`--help` exits 0)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

SCRIPTS = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_runs(name):
    script = Path(sys.executable).parent / name
    if not script.exists():
        pytest.fail(f"{script} is not installed: reinstall the project (pip install -e .)")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
