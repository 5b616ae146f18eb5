"""What adapt, predict, evaluate and demo say on stderr when it is not a terminal (a log file, a
pipe, CI), with --quiet and --verbose, and their --json results on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.commands.plain_progress import PlainBatchProgress, PlainTrainReporter
from cegate_cli.data.synthetic import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = ["-b", "tiny", "--steps", "4", "--batch-size", "2", "--crop", "32", "--val-every", "2", "--fisher-samples", "2", "--select", "3", "--device", "cpu"]
MAP = ["--tile", "48", "--overlap", "8", "--device", "cpu"]
EVERY_LINE = {"CEGATE_PROGRESS_SECONDS": "0"}
"""Every phase and every step gets its lines: tiny runs are quicker than the default 2 s / 15 s."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return make_demo_dataset(tmp_path_factory.mktemp("feedback") / "data", n_source=2, n_target=2, size=72, seed=2, n_target_eval=2)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("feedback-run") / "run"
    result = CliRunner().invoke(app, ["adapt", str(data.source_dir), "-o", str(out), *TINY, "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_adapt_in_a_log_names_every_long_phase_and_prints_progress_lines(data, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["adapt", str(data.source_dir), "-o", str(tmp_path / "run"), *TINY], env=EVERY_LINE)
    assert result.exit_code == 0, result.output
    log = result.stderr
    for started, ended in [
        ("loading the backbone tiny ...", "loading the backbone tiny: done in"),
        ("band statistics of 1 image ...", "band statistics of 1 image: done in"),
        # fisher-cost (the default) scores only the modules it may pick: tiny's blocks 3-5, 9 of 18
        ("Fisher scoring of 9 modules on 2 crops ...", "Fisher scoring of 9 modules on 2 crops: done in"),
        ("training: 4 steps ...", "training: done in"),
    ]:
        assert started in log and ended in log, log
        assert log.index(started) < log.index(ended)
    assert "adapt step 1/4 (25%)  loss " in log and "adapt step 2/4 (50%)" in log and "adapt step 4/4 (100%)" in log
    last = next(line for line in log.splitlines() if line.startswith("adapt step 4/4 (100%)"))
    assert "elapsed " in last and "ETA " in last
    assert "validation mIoU" in log
    # The result goes to stdout, the log does not.
    assert "run folder:" in result.stdout and "adapt step" not in result.stdout


def test_a_phase_is_named_while_it_runs_once_it_takes_long_and_a_quick_one_not_at_all() -> None:
    import threading
    import time

    from cegate_cli.infra.progress import phase

    lines: list[str] = []

    class Console:
        def print(self, text: str, **_: object) -> None:
            lines.append(text)

    reporter = PlainTrainReporter(Console(), interval=15.0)  # type: ignore[arg-type]
    reporter.phase_delay = 0.05
    with phase(reporter, "quick"):
        pass
    assert lines == []  # nothing to say about a step that took no time
    seen = threading.Event()
    with phase(reporter, "loading the backbone"):
        deadline = time.monotonic() + 30
        while "loading the backbone ..." not in lines and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.set()
    assert seen.is_set() and lines[0] == "loading the backbone ..."  # printed while the phase ran
    assert lines[1].startswith("loading the backbone: done in ")
    with pytest.raises(RuntimeError):
        with phase(reporter, "failing"):
            raise RuntimeError("boom")
    time.sleep(0.2)
    assert len(lines) == 2  # a phase that failed quickly leaves the error alone


def test_a_single_step_reads_1_step() -> None:
    from cegate_cli.infra.words import counted

    lines: list[str] = []

    class Console:
        def print(self, text: str, **_: object) -> None:
            lines.append(text)

    PlainTrainReporter(Console(), interval=30.0).start(1, 0)  # type: ignore[arg-type]
    assert lines == ["training: 1 step ..."]
    assert (counted(1, "step"), counted(0, "step"), counted(2, "crop")) == ("1 step", "0 steps", "2 crops")


def test_plain_training_lines_come_at_a_steady_interval() -> None:
    """300 steps of one second each, lines every 30 s: the first, one per 30 s, and the last."""
    lines: list[str] = []
    now = [0.0]

    class Console:
        def print(self, text: str, **_: object) -> None:
            lines.append(text)

    reporter = PlainTrainReporter(Console(), interval=30.0, clock=lambda: now[0])  # type: ignore[arg-type]
    reporter.start(300, 0)
    for step in range(1, 301):
        now[0] = float(step)
        reporter.step(step, loss=1.0 / step, lr=1e-3)
    reporter.finish()
    steps = [line for line in lines if line.startswith("adapt step")]
    assert steps[0].startswith("adapt step 1/300") and steps[-1].startswith("adapt step 300/300 (100%)")
    assert len(steps) == 11  # step 1, 31, 61, ..., 271, and 300
    assert "ETA 59.0 s" in next(line for line in steps if line.startswith("adapt step 241/300"))
    assert lines[-1] == "training: done in 0:05:00"


def test_training_stopped_early_is_not_reported_as_done() -> None:
    """Ctrl-C or an error: the log says where training stopped, not that it was done."""
    lines: list[str] = []

    class Console:
        def print(self, text: str, **_: object) -> None:
            lines.append(text)

    now = [0.0]
    reporter = PlainTrainReporter(Console(), interval=15.0, clock=lambda: now[0])  # type: ignore[arg-type]
    reporter.start(300, 100)  # resumed at step 100
    for step in range(101, 108):
        now[0] += 2.0
        reporter.step(step, loss=0.5, lr=1e-3)
    reporter.finish()
    reporter.finish()  # the command's own clean-up calls it again: one line only
    assert lines[0] == "training: 300 steps, resuming at step 100 ..."
    assert lines[-1] == "training: stopped at step 107 of 300 after 14.0 s"
    assert sum(line.startswith("training: stopped") for line in lines) == 1


def test_plain_scene_lines_show_tiles_and_eta_at_the_interval(tmp_path: Path) -> None:
    from cegate_cli.predict.batch import FileOutcome, OutputPaths

    lines: list[str] = []
    now = [0.0]

    class Console:
        def print(self, text: str, **_: object) -> None:
            lines.append(text)

    progress = PlainBatchProgress(Console(), interval=10.0, clock=lambda: now[0])  # type: ignore[arg-type]
    scene = tmp_path / "big.tif"
    progress.file_started(scene, 0, 1, 100)
    for tick in range(1, 101):
        now[0] = float(tick)
        progress.tiles_done(1)
    progress.file_finished(FileOutcome(scene, "done", OutputPaths(tmp_path / "big.mask.tif", None, None)))
    assert lines[0] == "scene 1/1 big.tif: 100 tiles ..."
    assert "scene 1/1 big.tif: tiles 50/100 (50%)  elapsed 50.0 s  ETA 50.0 s" in lines
    assert lines[-1] == "scene 1/1 big.tif: done in 0:01:40"
    assert 9 <= len(lines) <= 12


def test_plain_scene_lines_count_one_tile_and_say_when_a_mask_was_kept(tmp_path: Path) -> None:
    """A 256 px tile is "1 tile", and a scene whose mask an earlier call left (only its polygons
    made now) says so and how to map it again, instead of a bare "done" as if it had been mapped."""
    from cegate_cli.predict.batch import FileOutcome, OutputPaths

    lines: list[str] = []

    class Console:
        def print(self, text: str, **_: object) -> None:
            lines.append(text)

    progress = PlainBatchProgress(Console(), interval=10.0, clock=lambda: 0.0)  # type: ignore[arg-type]
    small, kept = tmp_path / "small.tif", tmp_path / "kept.tif"
    progress.file_started(small, 0, 2, 1)
    progress.file_finished(FileOutcome(small, "done", OutputPaths(tmp_path / "small.mask.tif", None, None)))
    progress.file_started(kept, 1, 2, 0)
    outputs = OutputPaths(tmp_path / "kept.mask.tif", tmp_path / "kept.geojson", None)
    progress.file_finished(FileOutcome(kept, "done", outputs, message="mask existed; polygons made from it"))
    assert lines == [
        "scene 1/2 small.tif: 1 tile ...",
        "scene 1/2 small.tif: done in 0.0 s",
        "scene 2/2 kept.tif ...",
        "scene 2/2 kept.tif: done in 0.0 s (mask existed; polygons made from it; use --overwrite to map it again)",
    ]


def test_a_rerun_into_the_same_folder_says_which_masks_it_kept(run: Path, data, tmp_path: Path) -> None:
    out = tmp_path / "maps"
    first = CliRunner().invoke(app, ["predict", str(run), str(data.target_dir / "images"), "-o", str(out), *MAP, "-q"])
    assert first.exit_code == 0, first.output
    for polygons in out.glob("*.geojson"):
        polygons.unlink()
    again = CliRunner().invoke(app, ["predict", str(run), str(data.target_dir / "images"), "-o", str(out), *MAP], env=EVERY_LINE)
    assert again.exit_code == 0, again.output
    kept = [line for line in again.stderr.splitlines() if "mask existed; polygons made from it; use --overwrite to map it again" in line]
    assert len(kept) == 2, again.stderr


def test_quiet_leaves_the_result_alone_and_verbose_says_more(data, tmp_path: Path) -> None:
    runner = CliRunner()
    quiet = runner.invoke(app, ["adapt", str(data.source_dir), "-o", str(tmp_path / "q"), *TINY, "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr.strip() == "" and "run folder:" in quiet.stdout
    verbose = runner.invoke(app, ["adapt", str(data.source_dir), "-o", str(tmp_path / "v"), *TINY, "--verbose"])
    assert verbose.exit_code == 0, verbose.output
    assert "threads: " in verbose.stderr and "OMP_WAIT_POLICY=" in verbose.stderr
    assert "top Fisher scores: " in verbose.stderr
    assert "loading the backbone tiny ..." in verbose.stderr  # every phase, however short
    both = runner.invoke(app, ["adapt", str(data.source_dir), "-o", str(tmp_path / "b"), *TINY, "-q", "-v"])
    assert both.exit_code == 2 and both.output.strip() == "Error: --quiet and --verbose: choose one"


def test_adapt_json_is_the_result_on_stdout(data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["adapt", str(data.source_dir), "-o", str(out), *TINY, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    recorded = json.loads((out / "run.json").read_text())
    assert report["run_dir"] == str(out) and report["status"] == "complete" and report["mode"] == "supervised"
    assert report["selected"] == recorded["selection"]["final"] and len(report["selected"]) == 3
    assert report["metrics"]["best_val_miou"] == recorded["metrics"]["best_val_miou"]
    # The figure the saved weights score (after calibration where it moved a class), as the text summary says.
    assert report["metrics"]["calibration"] == recorded["metrics"]["calibration"]
    after = (recorded["metrics"]["calibration"] or {}).get("val_miou_after") if any((recorded["metrics"]["calibration"] or {}).get("offsets", [])) else None
    assert report["metrics"]["saved_val_miou"] == (after if after is not None else recorded["metrics"]["best_val_miou"])
    assert report["timing"]["total_seconds"] > 0 and report["timing"]["fisher_seconds"] > 0
    assert Path(report["files"]["weights"]).is_file() and Path(report["files"]["config"]).is_file()
    assert "training: done in" in result.stderr  # the log still goes to stderr


def test_predict_json_lists_every_scene_and_its_outputs(run: Path, data, tmp_path: Path) -> None:
    out = tmp_path / "maps"
    result = CliRunner().invoke(app, ["predict", str(run), str(data.target_dir / "images"), "-o", str(out), *MAP, "--json"], env=EVERY_LINE)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["done"], report["skipped"], report["failed"]) == (2, 0, 0) and report["seconds"] > 0
    for scene in report["scenes"]:
        mask = Path(scene["outputs"][0])
        assert mask.is_file() and Path(scene["outputs"][1]).suffix == ".geojson"
        with rasterio.open(mask) as dataset:
            labels = dataset.read(1)
        counted = {entry["id"]: entry["pixels"] for entry in scene["class_pixels"]}
        assert counted == {int(v): int(n) for v, n in zip(*np.unique(labels[labels != 255], return_counts=True))}
        assert {entry["name"] for entry in scene["class_pixels"]} <= {"water", "vegetation", "built-up", "bare soil"}
        assert scene["seconds"] > 0 and scene["tiles"] == 4
    log = result.stderr
    assert f"loading the run {run} ..." in log and f"loading the run {run}: done in" in log
    assert "scene 1/2 target_1_000.tif: 4 tiles ..." in log and "scene 2/2 target_1_001.tif: done in" in log


def test_evaluate_table_shows_the_confusion_matrix(run: Path, data) -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["evaluate", str(run), str(data.target_labels_dir), *MAP])
    assert table.exit_code == 0, table.output
    as_json = json.loads(runner.invoke(app, ["evaluate", str(run), str(data.target_labels_dir), *MAP, "--json", "-q"]).stdout)
    text = table.stdout
    assert "confusion matrix (pixels; rows: label, columns: predicted)" in text
    block = text[text.index("confusion matrix") :]
    for row in as_json["classes"]:
        cells = [f"{n:,}" for n in as_json["matrix"][row["id"]]]
        line = next(line for line in block.splitlines() if line.strip().startswith(row["name"]))
        assert line.split()[-4:] == cells, line


@pytest.mark.slow
def test_adapt_with_stderr_to_a_file_writes_progress_while_it_runs(data, tmp_path: Path) -> None:
    """The real thing, with the default settings: a separate process whose stderr is a file, as
    under nohup or a scheduler."""
    log = tmp_path / "adapt.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with open(log, "w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "cegate_cli", "adapt", str(data.source_dir), "-o", str(tmp_path / "run"), *TINY],
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
            env=env,
            timeout=600,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\x1b[" not in text  # no terminal control sequences in a log file
    for line in ("training: 4 steps ...", "adapt step 1/4 (25%)", "adapt step 4/4 (100%)", "training: done in"):
        assert line in text
    assert "run folder:" in done.stdout


@pytest.mark.slow
def test_demo_json_and_its_phases_in_a_log(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "demo"), "--steps", "3", "--device", "cpu", "--json"], env=EVERY_LINE)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["run"]["status"] == "complete" and report["run"]["mode"] == "source+target"
    assert report["predictions"]["done"] == len(list(Path(report["predictions"]["folder"]).glob("*.mask.tif"))) > 0
    assert 0.0 <= report["evaluation"]["miou"] <= 1.0
    seconds = report["seconds"]
    assert set(seconds) == {"data", "adapt", "predict", "evaluate", "total"}
    assert seconds["total"] >= seconds["adapt"] > 0
    log = result.stderr
    for phase in (
        "generating a labeled source and a shifted target domain",
        "loading the backbone galileo-nano",
        "band statistics of",
        "Fisher scoring of",
        "scoring the target maps against the held-out labels",
    ):
        assert f"{phase}" in log and ": done in" in log[log.index(phase) :], phase
    assert "training: done in" in log and "scene 1/" in log
