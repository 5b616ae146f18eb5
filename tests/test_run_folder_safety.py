"""Where `adapt` writes (issue 13): a bad option never costs the run already in `-o`, one process
writes a run folder at a time, and an unusable `-o` is one line."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from run_folder_helpers import CLI_TRAIN, error_line, small_options, snapshot
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.errors import RunFolderError
from cegate_cli.pipelines.adapt import adapt
from cegate_cli.run import read_manifest
from cegate_cli.run.lock import LOCK_NAME, RunLock


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=72, seed=1)


@pytest.fixture(scope="module")
def complete_run(demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return adapt(small_options(demo, tmp_path_factory.mktemp("runs") / "run")).run_dir


@pytest.mark.parametrize(
    "bad",
    [
        ["--crop", "63"],
        ["--select", "999"],
        ["--device", "tpu"],
        pytest.param(["--device", "cuda"], marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")),
    ],
    ids=["crop", "select", "device", "cuda"],
)
def test_overwrite_with_an_invalid_option_leaves_the_run_untouched(demo, complete_run: Path, tmp_path: Path, bad: list[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(complete_run, run)
    before = snapshot(run)
    result = CliRunner().invoke(app, ["adapt", str(demo.source_dir), "-o", str(run), *CLI_TRAIN, "--overwrite", *bad])
    assert result.exit_code == 2, result.output
    assert bad[0] in error_line(result.output)
    assert snapshot(run) == before
    assert read_manifest(run).status == "complete"


@pytest.mark.slow
def test_a_second_adapt_into_a_busy_run_folder_is_refused(demo, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [
        sys.executable,
        "-m",
        "cegate_cli",
        "adapt",
        str(demo.source_dir),
        "-o",
        str(run),
        "--backbone",
        "tiny",
        "--crop",
        "32",
        "--batch-size",
        "2",
        "--fisher-samples",
        "2",
        "--select",
        "3",
        "--device",
        "cpu",
    ]
    first = subprocess.Popen([*base, "--steps", "100000", "--val-every", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "run.json").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        record = (run / "run.json").read_bytes()  # the first run's, written when it started
        second = subprocess.run([*base, "--steps", "2", "--overwrite"], capture_output=True, text=True, env=env, timeout=300)
        assert second.returncode == 2, second.stderr
        line = error_line(second.stderr)
        assert str(run) in line and f"PID {first.pid}" in line
        assert first.poll() is None  # the first run goes on, its folder untouched
        assert (run / "run.json").read_bytes() == record and read_manifest(run).status == "training"
    finally:
        first.kill()
        first.wait()


def test_the_run_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    holder = RunLock(tmp_path).acquire()
    with pytest.raises(RunFolderError, match=f"PID {os.getpid()}"):
        RunLock(tmp_path).acquire()
    holder.release()
    RunLock(tmp_path).acquire().release()
    assert (tmp_path / LOCK_NAME).is_file()


def test_out_pointing_at_a_file_is_one_line(demo, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    result = CliRunner().invoke(app, ["adapt", str(demo.source_dir), "-o", str(target), *CLI_TRAIN])
    assert result.exit_code == 2, result.output
    assert str(target) in error_line(result.output) and "-o" in result.output
    assert target.read_text() == "keep me"


def test_out_in_a_read_only_place_is_one_line(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cegate_cli.run.lock as runlock_module

    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(LOCK_NAME) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(runlock_module.os, "open", read_only)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["adapt", str(demo.source_dir), "-o", str(run), *CLI_TRAIN])
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    assert str(run) in line and "Read-only file system" in line and "another -o" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder_for_real(demo, tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        result = CliRunner().invoke(app, ["adapt", str(demo.source_dir), "-o", str(parent / "run"), *CLI_TRAIN])
    finally:
        parent.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert str(parent / "run") in error_line(result.output)


def test_overwrite_puts_the_old_run_back_when_the_new_one_fails(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old run is set aside, not deleted: a new run that fails mid-training (a full disk, a
    crash) leaves the old run exactly as it was; one that completes replaces it."""
    from dataclasses import replace

    from cegate_cli.train.supervised import SupervisedTrainer

    run = tmp_path / "run"
    adapt(small_options(demo, run))
    before = snapshot(run)

    def fail_mid_training(self, resume=False, stop_after=None):  # noqa: ANN001
        (run / "run.json").write_text("{half written by the new run")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(SupervisedTrainer, "fit", fail_mid_training)
        with pytest.raises(OSError):
            adapt(replace(small_options(demo, run), overwrite=True))
    assert snapshot(run) == before
    assert not (run / ".replaced-run").exists()
    adapt(replace(small_options(demo, run, seed=5), overwrite=True))  # a new run that completes replaces the old
    assert read_manifest(run).training.seed == 5 and not (run / ".replaced-run").exists()
