"""An `adapt --overwrite` that stops before its new run completes (Ctrl-C, a kill) keeps the earlier
run aside in RUN/.replaced-run. Every command that touches the folder says where it is and the
ways back, and each way back works: `cegate restore RUN` puts the earlier run back byte for byte,
`adapt --resume` finishes the new run (and only then drops the earlier one), `--overwrite` again
keeps the earlier run aside. The real SIGKILL case is in test_overwrite_kill.py."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from run_folder_helpers import CLI_TRAIN, error_line, small_options, snapshot
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.errors import TrainingInterrupted
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import adapt
from cegate_cli.run import read_manifest
from cegate_cli.run.replaced import PARTIAL_DIR
from cegate_cli.train.reporter import SilentReporter

ASIDE = ".replaced-run"
AS_CLI = {"lr": TrainConfig.lr, "warmup_steps": TrainConfig.warmup_steps}
"""small_options with CLI_TRAIN's values where they differ: a --resume repeats the run's own options."""


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=72, seed=1)


@pytest.fixture(scope="module")
def complete_run(demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return adapt(small_options(demo, tmp_path_factory.mktemp("runs") / "run")).run_dir


def _stopped_overwrite(demo, complete_run: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A copy of the complete run, then an --overwrite of it stopped at step 2 (its resume state
    written, nothing completed): what a kill or a Ctrl-C leaves."""
    run = tmp_path / "run"
    shutil.copytree(complete_run, run)
    before = snapshot(run)
    adapt(replace(small_options(demo, run, seed=5, **AS_CLI), overwrite=True), stop_after=2)
    assert (run / ASIDE / "run.json").is_file() and read_manifest(run).status == "training"
    return run, before


def test_every_command_names_the_earlier_run_and_restore_puts_it_back(demo, complete_run: Path, tmp_path: Path) -> None:
    run, before = _stopped_overwrite(demo, complete_run, tmp_path)
    runner = CliRunner()
    for args in (
        ["adapt", str(demo.source_dir), "-o", str(run), *CLI_TRAIN],
        ["predict", str(run), str(demo.target_dir / "images"), "-o", str(tmp_path / "maps"), "--device", "cpu"],
        ["evaluate", str(run), str(demo.target_labels_dir), "--device", "cpu"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args[0], result.output)
        line = error_line(result.output)
        assert str(run / ASIDE) in line and f"cegate restore {run}" in line and "--resume" in line, (args[0], line)
    inspected = runner.invoke(app, ["inspect", str(run)])
    assert inspected.exit_code == 0 and f"cegate restore {run}" in inspected.output
    assert not (tmp_path / "maps").exists()

    restored = runner.invoke(app, ["restore", str(run)])
    assert restored.exit_code == 0, restored.output
    assert "back in place" in restored.output
    assert snapshot(run) == before
    again = runner.invoke(app, ["restore", str(run)])
    assert again.exit_code == 2 and "nothing to restore" in error_line(again.output)


def test_resume_finishes_the_new_run_and_then_drops_the_earlier_one(demo, complete_run: Path, tmp_path: Path) -> None:
    run, _ = _stopped_overwrite(demo, complete_run, tmp_path)
    flags = [*CLI_TRAIN[: CLI_TRAIN.index("--seed")], "--seed", "5", *CLI_TRAIN[CLI_TRAIN.index("--seed") + 2 :]]
    result = CliRunner().invoke(app, ["adapt", str(demo.source_dir), "-o", str(run), *flags, "--resume"])
    assert result.exit_code == 0, result.output
    assert f"note: this run continues the stopped run; the earlier run stays in {run / ASIDE} until it completes" in result.output
    assert "warning" not in result.output  # a healthy resume: nothing is wrong
    assert read_manifest(run).status == "complete" and read_manifest(run).training.seed == 5
    assert not (run / ASIDE).exists()


def test_overwrite_again_replaces_the_unfinished_run_not_the_earlier_one(demo, complete_run: Path, tmp_path: Path) -> None:
    run, before = _stopped_overwrite(demo, complete_run, tmp_path)
    adapt(replace(small_options(demo, run, seed=7), overwrite=True), stop_after=2)  # stopped once more
    assert read_manifest(run).training.seed == 7
    assert read_manifest(run / ASIDE).training.seed == 3  # still the complete run, not the seed-5 one
    assert CliRunner().invoke(app, ["restore", str(run)]).exit_code == 0
    assert snapshot(run) == before


def test_a_set_aside_cut_short_is_named_and_undone(demo, complete_run: Path, tmp_path: Path) -> None:
    """A kill between the moves of the set-aside: run.json already moved, the weights not yet."""
    run = tmp_path / "run"
    shutil.copytree(complete_run, run)
    before = snapshot(run)
    (run / PARTIAL_DIR).mkdir()
    (run / "run.json").replace(run / PARTIAL_DIR / "run.json")
    result = CliRunner().invoke(app, ["predict", str(run), str(demo.target_dir / "images"), "-o", str(tmp_path / "maps")])
    assert result.exit_code == 2 and f"cegate restore {run}" in error_line(result.output)
    assert CliRunner().invoke(app, ["restore", str(run)]).exit_code == 0
    assert snapshot(run) == before


class _CtrlCAt(SilentReporter):
    """Ctrl-C as the user presses it: a KeyboardInterrupt out of the training loop at `step`."""

    def __init__(self, step: int) -> None:
        self.at = step

    def step(self, step: int, loss: float, lr: float) -> None:
        if step >= self.at:
            raise KeyboardInterrupt


def test_ctrl_c_during_overwrite_gives_a_way_back_that_works(demo, complete_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(complete_run, run)
    options = replace(small_options(demo, run, seed=5, steps=6, **AS_CLI), overwrite=True)
    with pytest.raises(TrainingInterrupted) as stopped:
        adapt(options, _CtrlCAt(3))
    message = str(stopped.value)
    assert "--resume in place of --overwrite" in message and str(run / ASIDE) in message and f"cegate restore {run}" in message
    assert read_manifest(run).status == "interrupted"
    flags = [
        "--backbone",
        "tiny",
        "--steps",
        "6",
        "--crop",
        "32",
        "--batch-size",
        "2",
        "--fisher-samples",
        "2",
        "--select",
        "3",
        "--val-every",
        "2",
        "--save-every",
        "2",
        "--seed",
        "5",
        "--device",
        "cpu",
    ]
    resumed = CliRunner().invoke(app, ["adapt", str(demo.source_dir), "-o", str(run), *flags, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert read_manifest(run).status == "complete" and not (run / ASIDE).exists()


def test_ctrl_c_before_the_first_resume_state_puts_the_earlier_run_back(demo, complete_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(complete_run, run)
    before = snapshot(run)
    with pytest.raises(TrainingInterrupted) as stopped:
        adapt(replace(small_options(demo, run, seed=5), overwrite=True), _CtrlCAt(1))
    assert "the earlier run is back in place" in str(stopped.value)
    assert snapshot(run) == before
