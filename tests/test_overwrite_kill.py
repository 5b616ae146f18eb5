"""`kill -9` during `adapt --overwrite`, for real: the next command names the earlier run kept aside,
and both ways back work (`cegate restore` gives the earlier run back byte for byte; `adapt --resume`
completes the new run and only then drops the earlier one)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_folder_helpers import error_line, snapshot
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.data.synthetic import make_demo_dataset
from cegate_cli.run import read_manifest

pytestmark = pytest.mark.slow  # real subprocesses killed with SIGKILL

ARGS = [
    "--backbone",
    "tiny",
    "--crop",
    "32",
    "--batch-size",
    "2",
    "--fisher-samples",
    "2",
    "--select",
    "4",
    "--val-every",
    "20",
    "--save-every",
    "2",
    "--device",
    "cpu",
]


def _adapt(source: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cegate_cli", "adapt", str(source), "-o", str(out), *ARGS, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )


def test_sigkill_during_overwrite_then_restore_or_resume(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "data", n_source=3, n_target=1, size=72, seed=4)
    run = tmp_path / "run"
    first = _adapt(data.source_dir, run, "--steps", "4", "--seed", "1")
    assert first.wait(timeout=300) == 0, first.stderr.read().decode() if first.stderr else ""
    before = snapshot(run)

    victim = _adapt(data.source_dir, run, "--steps", "40", "--seed", "2", "--overwrite")
    state = run / "state" / "trainer.json"
    deadline = time.monotonic() + 180
    while not ((run / ".replaced-run").is_dir() and state.exists()) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    if read_manifest(run).status == "complete":
        pytest.skip("the new run finished before it could be killed")
    assert (run / ".replaced-run" / "run.json").is_file()
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)

    told = CliRunner().invoke(app, ["adapt", str(data.source_dir), "-o", str(run), *ARGS, "--steps", "40", "--seed", "2"])
    assert told.exit_code == 2, told.output
    line = error_line(told.output)
    assert str(run / ".replaced-run") in line and f"cegate restore {run}" in line and "--resume" in line
    restored = CliRunner().invoke(app, ["restore", str(run)])
    assert restored.exit_code == 0, restored.output
    assert snapshot(run) == before

    resumed = _adapt(data.source_dir, copy, "--steps", "40", "--seed", "2", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    assert read_manifest(copy).status == "complete" and read_manifest(copy).training.seed == 2
    assert not (copy / ".replaced-run").exists()
