"""Kill `cegate adapt` for real (SIGKILL) and resume it: the weights equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cegate_cli.data.synthetic import make_demo_dataset

pytestmark = pytest.mark.slow  # real subprocesses (torchrun, kill, signals): the README's full run covers them

ARGS = [
    "--backbone",
    "tiny",
    "--steps",
    "60",
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
    "--seed",
    "5",
]


def _adapt(source: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cegate_cli", "adapt", str(source), "-o", str(out), *ARGS, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "data", n_source=3, n_target=1, size=72, seed=4)
    full = _adapt(data.source_dir, tmp_path / "full")
    killed_dir = tmp_path / "killed"
    victim = _adapt(data.source_dir, killed_dir)
    state = killed_dir / "state" / "trainer.json"  # the record is renamed last: the state is complete
    deadline = time.monotonic() + 120
    while not state.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    manifest = json.loads((killed_dir / "run.json").read_text())
    if manifest["status"] == "complete":
        pytest.skip("the run finished before it could be killed")
    assert not (killed_dir / "adapter.safetensors").exists()
    assert not [p for p in killed_dir.rglob("*") if ".tmp" in p.name and p.stat().st_size == 0]
    resumed = _adapt(data.source_dir, killed_dir, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    assert full.wait(timeout=300) == 0, full.stderr.read().decode() if full.stderr else ""
    a = load_file(str(tmp_path / "full" / "adapter_last.safetensors"))
    b = load_file(str(killed_dir / "adapter_last.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert json.loads((killed_dir / "run.json").read_text())["status"] == "complete"
