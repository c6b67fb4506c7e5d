"""The tree passes ruff (configured in pyproject.toml), as part of the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    ruff = Path(sys.executable).with_name("ruff")
    cmd = [str(ruff)] if ruff.exists() else ([shutil.which("ruff")] if shutil.which("ruff")
                                             else None)
    if cmd is None:
        pytest.skip("ruff is not installed (it is in the [test] extra)")
    result = subprocess.run([*cmd, "check", "tokn", "tests", "bench"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
