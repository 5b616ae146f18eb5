"""Sharing the CPU gracefully: OpenMP's wait policy before torch loads, threads from the free cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.errors import InputError
from cegate_cli.threads import choose_threads, free_cores

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [(2, 0.0, 2), (2, 0.3, 2), (2, 1.0, 1), (2, 1.4, 1), (2, 6.0, 1), (8, 3.0, 5), (8, 2.5, 6), (4, None, 4)],
)
def test_free_cores_are_the_cores_minus_the_load(cores: int, load: float | None, expected: int) -> None:
    assert free_cores(cores, load) == expected


def test_threads_flag_then_omp_num_threads_then_free_cores() -> None:
    assert choose_threads(3, cores=2, load=1.0, environ={"OMP_NUM_THREADS": "1"}).threads == 3
    chosen = choose_threads(None, cores=8, load=0.0, environ={"OMP_NUM_THREADS": "2"})
    assert (chosen.threads, chosen.reason) == (2, "OMP_NUM_THREADS")
    chosen = choose_threads(None, cores=2, load=1.0, environ={})
    assert (chosen.threads, chosen.reason) == (1, "free cores")
    assert "1-minute load 1.00" in chosen.describe()
    with pytest.raises(InputError, match="--threads 0: must be at least 1"):
        choose_threads(0, cores=2, load=0.0, environ={})


def _import_cli(env_policy: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    env["PYTHONPATH"] = str(ROOT)
    code = "import os, sys; import cegate_cli.cli; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    return done.stdout.split()


def test_the_cli_sets_a_passive_wait_policy_before_torch_is_imported() -> None:
    """libgomp reads OMP_WAIT_POLICY once, when torch first loads it: the CLI must set it while torch is
    not yet imported, and leave a value the user chose alone."""
    assert _import_cli(None) == ["PASSIVE", "False"]
    assert _import_cli("ACTIVE") == ["ACTIVE", "False"]


def test_threads_flag_sets_torch_threads_and_zero_is_refused(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    runner = CliRunner()
    try:
        refused = runner.invoke(app, ["predict", str(tmp_path / "no-run"), str(tmp_path), "-o", str(tmp_path / "o"), "--threads", "0"])
        assert refused.exit_code == 2
        assert refused.output.strip() == "Error: --threads 0: must be at least 1 (leave it out to use the cores free now)"
        torch.set_num_threads(2)
        # The run folder is missing, so predict fails after the threads are set: only the threads matter here.
        result = runner.invoke(app, ["predict", str(tmp_path / "no-run"), str(tmp_path), "-o", str(tmp_path / "o"), "--threads", "1", "-v"])
        assert result.exit_code == 2
        assert torch.get_num_threads() == 1
        assert "threads: 1 (--threads; " in result.stderr
    finally:
        torch.set_num_threads(before)
