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
from cegate_cli.infra.threads import busy_between, busy_cores_now, choose_threads, cpu_times, free_cores

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
    assert choose_threads(8, cores=2, load=0.0, environ={}).threads == 8  # oversubscribing on purpose is allowed
    with pytest.raises(InputError, match=r"--threads 100000: at most 8, 4 per core cegate may use \(2 here\)"):
        choose_threads(100000, cores=2, load=0.0, environ={})  # was: "can't start new thread" and a traceback


def test_busy_cores_come_from_the_kernels_per_core_counters() -> None:
    before = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 40 0 0 0 0 0 0\ncpu2 0 0 0 100 0 0 0 0\n"
    after = "cpu  x\ncpu0 105 0 5 40 0 0 0 0 0 0\ncpu1 10 0 5 130 5 0 0 0 0 0\ncpu2 0 0 0 200 0 0 0 0\n"
    mine = {0, 1}  # cpu2 is outside this process's affinity: not counted
    first, second = cpu_times(before, mine), cpu_times(after, mine)
    assert first == {0: (40, 50), 1: (40, 50)} and second == {0: (40, 150), 1: (135, 150)}
    assert busy_between(first, second) == pytest.approx(1.0 + 0.05)  # cpu0 fully busy, cpu1 5% busy
    assert busy_between(first, first) is None  # no time passed: no answer rather than a wrong one


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux's /proc/stat")
def test_a_busy_loop_on_another_core_is_seen_now_not_a_minute_later() -> None:
    idle = busy_cores_now(0.3)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if idle is not None and idle > usable - 0.6:  # the loop must be able to add the 0.5 core asserted below
        # Every core is already busy (another job on a shared machine): one more loop cannot show as
        # a new busy core, so there is nothing this test could measure now.
        pytest.skip(f"all {usable} cores already busy ({idle:.1f} busy) before the loop started")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        busy = busy_cores_now(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert idle is not None and busy is not None
    assert busy >= 0.8 and busy - idle >= 0.5  # the loop holds about one core the moment it runs


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
