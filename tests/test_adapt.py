"""End-to-end `adapt` on tiny generated data: the run folder, resume equality, calibration, inspect."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.errors import OutputExistsError, RunFolderError
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.run import read_manifest

SMALL = TrainConfig(
    steps=6,
    batch_size=2,
    crop=32,
    lr=2e-3,
    warmup_steps=1,
    val_every=3,
    val_crops=4,
    save_every=2,
    fisher_samples=3,
    select="4",
    seed=3,
)


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=80, seed=1)


def _options(demo, out: Path, **train_changes) -> AdaptOptions:
    return AdaptOptions(source=demo.source_dir, out=out, backbone="tiny", train=replace(SMALL, **train_changes))


def test_adapt_writes_a_complete_small_run_folder(demo, tmp_path: Path) -> None:
    result = adapt(_options(demo, tmp_path / "run"))
    run = tmp_path / "run"
    manifest = read_manifest(run)
    assert manifest.status == "complete"
    assert len(manifest.final_selection) == 4
    assert manifest.bands.names == ("blue", "green", "red", "nir")
    assert [c.name for c in manifest.classes.classes] == ["water", "vegetation", "built-up", "bare soil"]
    assert manifest.metrics.best_val_miou is not None and 0.0 <= manifest.metrics.best_val_miou <= 1.0
    weights = load_file(str(run / "adapter.safetensors"))
    # Only what was trained: toolbox modules ever selected, the head, the adapted patch embedding.
    assert all(k.startswith(("toolbox.", "decoder.", "patch_embed.")) for k in weights)
    trained_modules = {tuple(k.split(".")[1:3]) for k in weights if k.startswith("toolbox.")}
    assert trained_modules == {(kind, str(layer)) for kind, layer in manifest.ever_selected}
    assert not any("blocks" in k for k in weights)
    assert (run / "adapter_last.safetensors").is_file() and (run / "state" / "trainer.safetensors").is_file()
    assert (run / "state" / "trainer.json").is_file() and not (run / "state" / "trainer.pt").exists()
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    assert result.outcome.completed


def test_refuses_to_overwrite_without_flag(demo, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(OutputExistsError):
        adapt(_options(demo, out))
    assert (out / "keep.txt").read_text() == "user data"
    with pytest.raises(RunFolderError, match="no resume state"):
        adapt(replace(_options(demo, tmp_path / "fresh"), resume=True))


def test_resume_reproduces_an_uninterrupted_run(demo, tmp_path: Path) -> None:
    changes = dict(steps=8, reselect_every=4, save_every=2)
    full = adapt(_options(demo, tmp_path / "full", **changes))
    # Interrupted after step 5: the last saved state is step 4, so steps 5.. are redone on resume.
    partial = adapt(_options(demo, tmp_path / "resumed", **changes), stop_after=5)
    assert not partial.outcome.completed
    assert read_manifest(tmp_path / "resumed").status == "training"
    resumed = adapt(replace(_options(demo, tmp_path / "resumed", **changes), resume=True))
    assert resumed.outcome.completed
    a = load_file(str(tmp_path / "full" / "adapter_last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_last.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [s.selected for s in full.manifest.selections] == [s.selected for s in resumed.manifest.selections]
    assert full.manifest.metrics.val_history == resumed.manifest.metrics.val_history
    # The best weights carry the calibration fitted at the best step: the same after a resume.
    assert full.manifest.metrics.calibration == resumed.manifest.metrics.calibration
    a = load_file(str(tmp_path / "full" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_resume_with_other_settings_is_refused(demo, tmp_path: Path) -> None:
    adapt(_options(demo, tmp_path / "run", steps=4), stop_after=2)
    before = (tmp_path / "run" / "run.json").read_bytes()
    with pytest.raises(RunFolderError, match="different settings"):
        adapt(replace(_options(demo, tmp_path / "run", steps=4, lr=0.5), resume=True))
    # The refused resume leaves the interrupted run's record as it was (its metrics, its history).
    assert (tmp_path / "run" / "run.json").read_bytes() == before


def test_cli_adapt_then_inspect(demo, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "adapt",
            str(demo.source_dir),
            "-o",
            str(out),
            "--backbone",
            "tiny",
            "--steps",
            "3",
            "--crop",
            "32",
            "--batch-size",
            "2",
            "--fisher-samples",
            "2",
            "--select",
            "3",
            "--val-every",
            "3",
            "--modules",
            "lora,earth",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "run folder" in result.output
    shown = runner.invoke(app, ["inspect", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "Fisher scores" in shown.output and "lora" in shown.output and "adapter" not in shown.output.split("Fisher")[1]
    as_json = runner.invoke(app, ["inspect", str(out), "--json"])
    report = json.loads(as_json.stdout)
    chosen = [(s["kind"], s["layer"]) for s in report["scores"] if s["selected"]]
    assert len(chosen) == 3 and {k for k, _ in chosen} <= {"lora", "earth"}
    assert report["status"] == "complete"
    lowest = min(layer for _, layer in chosen)  # one selection (no rescoring): its lowest block bounds autograd
    assert lowest >= 3  # the default rule, fisher-cost, keeps the backward pass to the upper half of the 6 blocks
    assert report["compute"] == {
        "rule": "fisher-cost",
        "selected": 3,
        "candidates": 12,
        "depth": 6,
        "lowest_block": lowest,
        "backward_blocks": 6 - lowest,
        "backward_share": (6 - lowest) / 6,
    }
    assert f"autograd runs through blocks {lowest}-5 ({6 - lowest} of 6)" in shown.output
    assert "rule       fisher-cost: the modules whose gradient" in shown.output  # the rule in words, not only its name
    again = runner.invoke(app, ["adapt", str(demo.source_dir), "-o", str(out), "--backbone", "tiny"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_inspect_of_an_interrupted_run_says_so_and_how_to_finish_it(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped before it completed, a run has no final selection yet: inspect must not read that as
    'head only', and says how to continue."""
    from cegate_cli.errors import TrainingInterrupted
    from cegate_cli.train.supervised import SupervisedTrainer

    step_once = SupervisedTrainer._train_step

    def ctrl_c_at_step_3(self, step):  # type: ignore[no-untyped-def]
        if step == 3:
            raise KeyboardInterrupt
        return step_once(self, step)

    monkeypatch.setattr(SupervisedTrainer, "_train_step", ctrl_c_at_step_3)
    with pytest.raises(TrainingInterrupted):
        adapt(_options(demo, tmp_path / "run"))
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "run")], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "not finished (interrupted)" in result.output and "--resume" in result.output
    assert "head only" not in result.output


def test_inspect_backbone_tiny_lists_candidates() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", "--backbone", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backbone"]["depth"] == 6
    assert len(report["candidates"]) == 18
    assert all(0 < m["share_of_backbone"] < 0.05 for m in report["candidates"])
    table = runner.invoke(app, ["inspect", "--backbone", "tiny"])
    assert table.exit_code == 0 and "candidate modules" in table.output


@pytest.mark.parametrize("command", ["adapt", "predict", "evaluate", "inspect", "pull", "demo"])
def test_every_command_help_renders(command: str) -> None:
    """Help text goes through rich markup: a stray `[/...]` in an option's help crashed `adapt --help`."""
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_compute_line_says_what_the_selection_skipped() -> None:
    from cegate_cli.reporting.report import describe_compute

    base = {"rule": "fisher", "selected": 18, "candidates": 72, "depth": 24}
    assert describe_compute({**base, "lowest_block": 0, "backward_blocks": 24}).endswith(
        "nothing of the backbone's backward pass is skipped (a module sits in block 0)"
    )
    assert describe_compute({**base, "lowest_block": 12, "backward_blocks": 12}).endswith(
        "autograd runs through blocks 12-23 (12 of 24): blocks 0-11 run forward only, 50% of the backbone's backward pass skipped"
    )
    assert describe_compute({**base, "lowest_block": 1, "backward_blocks": 23}).endswith(
        "block 0 runs forward only, 4% of the backbone's backward pass skipped"
    )
    assert "head only" in describe_compute({**base, "rule": "none", "lowest_block": None, "backward_blocks": 0})
    assert "all 24 blocks" in describe_compute({**base, "rule": "full", "lowest_block": 0, "backward_blocks": 24})


def test_every_selection_rule_is_explained_in_words() -> None:
    """inspect and report say what a rule chose; a rule added without a sentence would print its bare name."""
    from cegate_cli.options.train import SELECTIONS
    from cegate_cli.reporting.report import RULE_MEANINGS, describe_rule

    assert set(RULE_MEANINGS) == set(SELECTIONS)
    assert "upper half of the blocks" in describe_rule("fisher-cost") and "random" in describe_rule("fisher-cost")


def test_a_run_keeps_its_calibration_in_the_best_weights_and_run_json(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cegate_cli.train import supervised
    from cegate_cli.train.calibrate import Calibration

    # Known offsets, so the test sees them travel whatever the small run's own search finds.
    monkeypatch.setattr(
        supervised,
        "fit_class_offsets",
        lambda scores, labels, num_classes, ignore_index: Calibration((0.5, -0.25, 0.0, 1.0)[:num_classes], 0.4, 0.5, len(labels)),
    )
    options = AdaptOptions(source=demo.source_dir, out=tmp_path / "on", backbone="tiny", train=SMALL)
    adapt(options)
    adapt(replace(options, out=tmp_path / "off", train=replace(SMALL, calibrate=False)))
    on, off = read_manifest(tmp_path / "on"), read_manifest(tmp_path / "off")
    assert off.metrics.calibration is None
    calibration = on.metrics.calibration
    assert calibration["offsets"] == [0.5, -0.25, 0.0, 1.0] and on.classes.num_classes == 4
    best_on = load_file(str(tmp_path / "on" / "adapter.safetensors"))
    best_off = load_file(str(tmp_path / "off" / "adapter.safetensors"))
    # Training is the same; only the best weights' class bias differs, by the offsets.
    for name in best_on:
        if name != "decoder.classifier.bias":
            assert torch.equal(best_on[name], best_off[name]), name
    assert torch.allclose(best_on["decoder.classifier.bias"] - best_off["decoder.classifier.bias"], torch.tensor(calibration["offsets"]))
    last_on = load_file(str(tmp_path / "on" / "adapter_last.safetensors"))
    assert torch.equal(last_on["decoder.classifier.bias"], load_file(str(tmp_path / "off" / "adapter_last.safetensors"))["decoder.classifier.bias"])
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path / "on")])
    assert shown.exit_code == 0, shown.output
    assert "calibrated class scores water +0.50, vegetation -0.25, bare soil +1.00: validation mIoU 0.400 -> 0.500" in shown.output


def test_adapt_inspect_and_report_show_the_calibrated_miou_of_the_saved_weights(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """adapt's summary used to show the mIoU before calibration while inspect showed it after:
    both (and the HTML report) now give the value of the weights predict uses."""
    from cegate_cli.train import supervised
    from cegate_cli.train.calibrate import Calibration

    monkeypatch.setattr(
        supervised,
        "fit_class_offsets",
        lambda scores, labels, num_classes, ignore_index: Calibration((1.0,) + (0.0,) * (num_classes - 1), 0.4, 0.625, len(labels)),
    )
    runner = CliRunner()
    out = tmp_path / "run"
    trained = runner.invoke(
        app,
        [
            "adapt",
            str(demo.source_dir),
            "-o",
            str(out),
            "--backbone",
            "tiny",
            "--steps",
            "2",
            "--crop",
            "32",
            "--batch-size",
            "2",
            "--fisher-samples",
            "2",
            "--select",
            "2",
            "--val-every",
            "2",
            "--device",
            "cpu",
        ],
    )
    assert trained.exit_code == 0, trained.output
    manifest = read_manifest(out)
    assert manifest.saved_val_miou == 0.625 and manifest.metrics.best_val_miou != 0.625
    said = f"best validation mIoU 0.625 at step {manifest.metrics.best_step} (after calibration)"
    assert said in trained.stdout.splitlines()
    shown = runner.invoke(app, ["inspect", str(out)])
    assert shown.exit_code == 0 and f"metrics    {said}; last " in shown.output
    page = runner.invoke(app, ["report", str(out)])
    assert page.exit_code == 0, page.output
    assert said in (out / "report.html").read_text()
