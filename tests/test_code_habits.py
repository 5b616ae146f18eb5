"""Habits that keep the code easy to read and change: no runtime file past 500 lines, and the
whole tree linted and formatted by ruff as pyproject.toml configures it (`ruff check`, `ruff
format --check`), so a change that breaks either fails here, not in review."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cegate_cli"
MAX_LINES = 500
CHECKED = ["cegate_cli", "tests", "benchmarks", "tools", "examples"]


def test_no_runtime_file_exceeds_the_line_limit() -> None:
    long = {str(p.relative_to(ROOT)): n for p in sorted(PACKAGE.rglob("*.py")) if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (at most {MAX_LINES} lines each): {long}"


def _ruff() -> list[str]:
    """ruff as the test extra installs it, run by this interpreter."""
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.fail("ruff is not installed: python3 -m pip install -e '.[test]'")
    return [sys.executable, "-m", "ruff"]


def test_ruff_lint_passes() -> None:
    done = subprocess.run([*_ruff(), "check", "--no-cache", *CHECKED], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_format_is_clean() -> None:
    done = subprocess.run([*_ruff(), "format", "--check", "--no-cache", *CHECKED], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, "run `ruff format` on: " + done.stdout[-4000:] + done.stderr[-2000:]
