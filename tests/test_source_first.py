"""`adapt SOURCE --target T` (source-first): the source-only run, then guarded self-training."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.options.train import SelfTrainConfig, TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.run import read_manifest
from cegate_cli.run.state import read_state
from cegate_cli.train import guard

SMALL = TrainConfig(
    steps=4,
    batch_size=2,
    crop=32,
    lr=2e-3,
    warmup_steps=1,
    val_every=2,
    val_crops=2,
    save_every=2,
    fisher_samples=4,
    select="3",
    seed=5,
)
FIRST = SelfTrainConfig(confidence=0.3, stats_every=1, adapt_steps=3)


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=2, size=80, seed=2, n_target_eval=1)


@pytest.fixture(scope="module")
def source_only(demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "source"
    adapt(AdaptOptions(source=demo.source_dir, out=out, backbone="tiny", train=SMALL))
    return out


def _first(demo, out: Path, **changes) -> AdaptOptions:
    return AdaptOptions(source=demo.source_dir, out=out, backbone="tiny", train=SMALL, target=demo.target_dir, self_training=replace(FIRST, **changes))


def _equal(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_the_source_phase_is_the_source_only_run_and_the_guard_can_keep_it(demo, source_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "SOURCE_DROP", -1.0)  # any source validation "falls": the guard must keep the source model
    result = adapt(_first(demo, tmp_path / "run"))
    manifest = read_manifest(tmp_path / "run")
    verdict = manifest.adaptation.guard
    assert verdict["kept"] == "source" and any("source validation mIoU fell" in reason for reason in verdict["reasons"])
    # Exactly the source-only run: its weights (calibration included) and its normalisation.
    assert _equal(tmp_path / "run" / "adapter.safetensors", source_only / "adapter.safetensors")
    assert manifest.normalization == read_manifest(source_only).normalization
    assert manifest.selections[0].selected == read_manifest(source_only).selections[0].selected
    # The adapted model is still there for whoever wants it.
    assert not _equal(tmp_path / "run" / "adapter_last.safetensors", source_only / "adapter.safetensors")
    assert manifest.adaptation.source_steps == 4 and manifest.adaptation.adapt_steps == 3
    assert "kept the source model" in manifest.adaptation.weights
    assert result.outcome.step == 7
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path / "run")])
    assert shown.exit_code == 0 and "kept the source model" in shown.output


def test_without_a_finding_the_adapted_model_is_kept(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "SOURCE_DROP", 10.0)
    monkeypatch.setattr(guard, "VANISH_SHARE", 2.0)  # nothing can vanish
    adapt(_first(demo, tmp_path / "run"))
    manifest = read_manifest(tmp_path / "run")
    assert manifest.adaptation.guard["kept"] == "adapted"
    assert _equal(tmp_path / "run" / "adapter.safetensors", tmp_path / "run" / "adapter_last.safetensors")
    # The metrics, inspect and the report speak of the saved (adapted) weights: the last step's.
    metrics = manifest.metrics
    assert metrics.best_step == 7 and metrics.val_history[-1][0] == 7
    assert metrics.saved_val_miou == metrics.val_history[-1][1] and not metrics.calibrated
    assert manifest.adaptation.guard["adapted_val_miou"] == metrics.val_history[-1][1]
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path / "run")])
    assert shown.exit_code == 0 and "at step 7" in shown.output, shown.output
    page = tmp_path / "report.html"
    assert CliRunner().invoke(app, ["report", str(tmp_path / "run"), "-o", str(page)]).exit_code == 0
    assert "4 steps of 2 crops of 32 px (then 3 steps adapting to the target)" in page.read_text()
    # --target-norm auto: the statistics the source model was surer under, recorded, and what predict reads.
    choice = manifest.adaptation.normalization_choice
    assert set(choice["mean_confidence"]) == {"source", "target"}
    assert choice["chosen"] == guard.choose_normalization(choice["mean_confidence"]["source"], choice["mean_confidence"]["target"])
    source_mean = manifest.adaptation.source_normalization.mean
    assert (manifest.normalization.mean == source_mean) == (choice["chosen"] == "source")
    # Pseudo-labels are recorded only while self-training, from the source phase's end.
    assert [h["step"] for h in manifest.adaptation.pseudo_labels] == [4, 5, 6]


def test_target_norm_target_keeps_the_targets_statistics(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "SOURCE_DROP", 10.0)
    monkeypatch.setattr(guard, "VANISH_SHARE", 2.0)
    adapt(_first(demo, tmp_path / "run", target_norm="target"))
    manifest = read_manifest(tmp_path / "run")
    assert manifest.adaptation.normalization_choice is None
    assert manifest.normalization.mean != manifest.adaptation.source_normalization.mean


@pytest.mark.parametrize("stop", [3, 5, 6])  # in the source phase; in the adaptation, before and after its state
def test_resume_reproduces_an_uninterrupted_source_first_run(demo, tmp_path: Path, stop: int) -> None:
    full = adapt(_first(demo, tmp_path / "full"))
    partial = adapt(_first(demo, tmp_path / "resumed"), stop_after=stop)
    assert not partial.outcome.completed
    resumed = adapt(replace(_first(demo, tmp_path / "resumed"), resume=True))
    for name in ("adapter.safetensors", "adapter_last.safetensors"):
        assert _equal(tmp_path / "full" / name, tmp_path / "resumed" / name), name
    assert full.manifest.adaptation.pseudo_labels == resumed.manifest.adaptation.pseudo_labels
    assert full.manifest.adaptation.guard == resumed.manifest.adaptation.guard
    ta = read_state(tmp_path / "full" / "state")["teacher"]
    tb = read_state(tmp_path / "resumed" / "state")["teacher"]
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_auto_takes_the_targets_statistics_only_when_clearly_surer() -> None:
    assert guard.choose_normalization(0.80, 0.89) == "target"  # a sensor shift (the NAIP shift: +0.075)
    assert guard.choose_normalization(0.81, 0.82) == "source"  # a region's class mix (Dubai: at most +0.012)
    assert guard.choose_normalization(0.86, 0.78) == "source"


def test_the_guard_reads_a_vanished_class_and_a_forgotten_source() -> None:
    names = ["water", "land", "road"]
    fine = guard.judge((0.5, 0.4, 0.1), (0.45, 0.45, 0.1), 0.9, 0.60, 0.596, names)
    assert fine.kept == "adapted" and not fine.reasons
    slipped = guard.judge((0.5, 0.4, 0.1), (0.45, 0.45, 0.1), 0.9, 0.60, 0.592, names)  # a fall of 0.008: harm, on the Dubai pair
    assert slipped.kept == "source" and "0.600 to 0.592" in slipped.reasons[0]
    vanished = guard.judge((0.5, 0.4, 0.1), (0.55, 0.42, 0.03), 0.9, 0.60, 0.60, names)
    assert vanished.kept == "source" and vanished.reasons == ("road fell from 10% to 3% of the target's pixels",)
    rare = guard.judge((0.59, 0.4, 0.01), (0.6, 0.4, 0.0), 0.9, 0.60, 0.60, names)  # too rare to judge
    assert rare.kept == "adapted"
    forgot = guard.judge((0.5, 0.4, 0.1), (0.5, 0.4, 0.1), 0.9, 0.60, 0.50, names)
    assert forgot.kept == "source" and "0.600 to 0.500" in forgot.reasons[0]
    assert guard.GuardVerdict.from_dict(vanished.to_dict()) == replace(vanished, source_shares=(0.5, 0.4, 0.1), adapted_shares=(0.55, 0.42, 0.03))


def test_without_validation_the_guard_judges_the_source_phase_end_not_the_adapted_model(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No validation in the source phase: the source model is its last step, so keeping it gives
    exactly the source-only run's weights (not the adapted model compared with itself)."""
    monkeypatch.setattr(guard, "VANISH_SHARE", 0.0)
    monkeypatch.setattr(guard, "VANISH_RATIO", 2.0)  # every class "vanishes": the guard must keep the source model
    plain = replace(SMALL, val_every=0)
    adapt(AdaptOptions(source=demo.source_dir, out=tmp_path / "source", backbone="tiny", train=plain))
    adapt(replace(_first(demo, tmp_path / "run"), train=plain))
    verdict = read_manifest(tmp_path / "run").adaptation.guard
    assert verdict["kept"] == "source"
    assert _equal(tmp_path / "run" / "adapter.safetensors", tmp_path / "source" / "adapter.safetensors")
    assert not _equal(tmp_path / "run" / "adapter.safetensors", tmp_path / "run" / "adapter_last.safetensors")
