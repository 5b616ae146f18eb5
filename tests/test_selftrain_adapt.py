"""`adapt` with an unlabeled target on tiny generated data: both modes end to end, resume, errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.errors import DataError, InputError, RunFolderError
from cegate_cli.options.train import SelfTrainConfig, TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.run import read_manifest
from cegate_cli.run.state import read_state
from cegate_cli.toolbox.fisher import select_top

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
# A low threshold so the few-step teacher of a test has confident pixels to learn from.
LOW = SelfTrainConfig(confidence=0.3, stats_every=2, schedule="joint")  # DACS from step 0; source-first: test_source_first.py


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=2, size=80, seed=2, n_target_eval=1)


@pytest.fixture(scope="module")
def dacs_run(demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "dacs"
    adapt(_dacs(demo, out))
    return out


def _dacs(demo, out: Path, **changes) -> AdaptOptions:
    return AdaptOptions(source=demo.source_dir, out=out, backbone="tiny", train=replace(SMALL, **changes), target=demo.target_dir, self_training=LOW)


def _from(demo, run: Path, out: Path, **changes) -> AdaptOptions:
    return AdaptOptions(source=None, out=out, train=replace(SMALL, **changes), target=demo.target_dir, from_run=run, self_training=LOW)


def test_source_plus_target_run_records_mode_target_and_pseudo_labels(demo, dacs_run: Path) -> None:
    manifest = read_manifest(dacs_run)
    assert manifest.status == "complete" and manifest.mode == "source+target"
    assert manifest.data.target == str(demo.target_dir.resolve())
    section = manifest.adaptation
    assert section.mode == "source+target" and section.target_images == 2
    # Target images are normalised with the target folder's statistics, and predict reads those.
    source_mean = section.source_normalization.mean
    assert manifest.normalization.mean != source_mean
    assert manifest.normalization.mean[0] > source_mean[0]  # the target sensor is brighter in blue
    history = section.pseudo_labels
    assert [h["step"] for h in history] == [0, 2, 3]
    for entry in history:
        assert 0.0 <= entry["confident_share"] <= 1.0 and 0.0 <= entry["mean_weight"] <= 1.0
        assert sum(entry["class_share"]) == pytest.approx(1.0, abs=1e-3)
    # The teacher held only the trained part: far less than the backbone.
    backbone_bytes = manifest.backbone.parameters * 4
    assert 0 < section.teacher_bytes < backbone_bytes
    assert manifest.metrics.best_val_miou is None and manifest.metrics.last_val_miou is not None
    best = load_file(str(dacs_run / "adapter.safetensors"))
    last = load_file(str(dacs_run / "adapter_last.safetensors"))
    assert all(torch.equal(best[k], last[k]) for k in last)  # no target labels: the last step is the run


def test_from_run_continues_on_the_target_only(demo, dacs_run: Path, tmp_path: Path) -> None:
    result = adapt(_from(demo, dacs_run, tmp_path / "cont", select="2"))
    manifest = read_manifest(tmp_path / "cont")
    earlier = read_manifest(dacs_run)
    assert manifest.mode == "target" and manifest.status == "complete"
    assert manifest.data.from_run == str(dacs_run.resolve())
    kept = [(m["kind"], m["layer"]) for m in manifest.adaptation.kept_modules]
    assert kept == earlier.final_selection
    # The earlier run's modules stay; the target's Fisher choice (top 2) is added to them.
    scores = manifest.selections[0].scores.normalized
    assert set(manifest.final_selection) == set(kept) | set(select_top(scores, 2))
    # Fisher scores came from the teacher's pseudo-labels on target crops.
    assert result.outcome.selections[0].scores.samples > 0
    assert manifest.bands == earlier.bands and manifest.classes == earlier.classes
    assert manifest.adaptation.pseudo_labels and manifest.metrics.val_history == ()
    weights = load_file(str(tmp_path / "cont" / "adapter.safetensors"))
    assert {tuple(k.split(".")[1:3]) for k in weights if k.startswith("toolbox.")} == {(k, str(l)) for k, l in manifest.ever_selected}


def test_from_run_scores_its_kept_modules_below_the_cost_cut_but_picks_above_it(demo, tmp_path: Path) -> None:
    """fisher-cost continuing a run whose modules sit in blocks 0 and 1 (of tiny's 6): those stay
    switched on and are scored with blocks 3-5, the rest of blocks 0-2 is not scored, and the
    target's own pick comes from blocks 3-5 only."""
    earlier = tmp_path / "low"
    low_kept = (("lora", 0), ("earth", 1))
    adapt(AdaptOptions(source=demo.source_dir, out=earlier, backbone="tiny", only_modules=low_kept, train=replace(SMALL, steps=2, select="2", selection="all")))
    adapt(_from(demo, earlier, tmp_path / "cont", select="2", steps=2))
    manifest = read_manifest(tmp_path / "cont")
    assert manifest.training.selection == "fisher-cost"
    assert {(m["kind"], m["layer"]) for m in manifest.adaptation.kept_modules} == set(low_kept)
    kinds = ("lora", "adapter", "earth")
    upper = {(kind, layer) for layer in (3, 4, 5) for kind in kinds}
    (selection,) = manifest.selections
    assert set(selection.scores.raw) == upper | set(low_kept)
    assert set(selection.unscored) == {(kind, layer) for layer in (0, 1, 2) for kind in kinds} - set(low_kept)
    picked = set(selection.selected) - set(low_kept)
    assert set(selection.selected) >= set(low_kept)
    assert picked == set(select_top({key: v for key, v in selection.scores.normalized.items() if key in upper}, 2))
    report = json.loads(CliRunner().invoke(app, ["inspect", str(tmp_path / "cont"), "--json"]).stdout)
    assert {(s["kind"], s["layer"]) for s in report["scores"] if s["score"] is None} == set(selection.unscored)
    assert {(s["kind"], s["layer"]) for s in report["scores"] if s["kept"]} == set(low_kept)
    assert report["compute"]["candidates"] == 18


def test_predict_and_inspect_read_self_trained_runs(demo, dacs_run: Path, tmp_path: Path) -> None:
    adapt(_from(demo, dacs_run, tmp_path / "cont", steps=2, save_every=1))
    runner = CliRunner()
    for run in (dacs_run, tmp_path / "cont"):
        out = tmp_path / f"maps-{run.name}"
        mapped = runner.invoke(
            app, ["predict", str(run), str(demo.target_labels_dir / "images"), "-o", str(out), "--tile", "64", "--overlap", "16", "--vector", "none"]
        )
        assert mapped.exit_code == 0, mapped.output
        masks = sorted(out.glob("*.mask.tif"))
        assert len(masks) == 1
        with rasterio.open(masks[0]) as ds:
            values = np.unique(ds.read(1))
        assert set(values.tolist()) <= {0, 1, 2, 3, 255}
        shown = runner.invoke(app, ["inspect", str(run)])
        assert shown.exit_code == 0, shown.output
        assert "pseudo-labels on target crops" in shown.output and "target" in shown.output
        report = json.loads(runner.invoke(app, ["inspect", str(run), "--json"]).stdout)
        adaptation = report["adaptation"]
        assert adaptation["mode"] == read_manifest(run).mode
        assert set(adaptation["pseudo_labels"][0]["class_share"]) == {"water", "vegetation", "built-up", "bare soil"}
    report = json.loads(runner.invoke(app, ["inspect", str(tmp_path / "cont"), "--json"]).stdout)
    assert report["adaptation"]["from_run"] == str(dacs_run.resolve())
    assert {s["kind"] + "@" + str(s["layer"]) for s in report["scores"] if s["kept"]} == set(report["adaptation"]["kept_modules"])
    assert sum(s["chosen"] for s in report["scores"]) == report["select_count"]  # the target's own top k


@pytest.mark.parametrize("mode", ["source+target", "target"])
def test_resume_reproduces_an_uninterrupted_self_training_run(demo, dacs_run: Path, tmp_path: Path, mode: str) -> None:
    def options(out: Path) -> AdaptOptions:
        if mode == "target":
            return _from(demo, dacs_run, out, steps=5, reselect_every=3)
        return _dacs(demo, out, steps=5, reselect_every=3)

    full = adapt(options(tmp_path / "full"))
    partial = adapt(options(tmp_path / "resumed"), stop_after=3)  # last save at step 2: step 3 is redone
    assert not partial.outcome.completed
    resumed = adapt(replace(options(tmp_path / "resumed"), resume=True))
    a = load_file(str(tmp_path / "full" / "adapter_last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_last.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert full.manifest.adaptation.pseudo_labels == resumed.manifest.adaptation.pseudo_labels
    assert [s.selected for s in full.manifest.selections] == [s.selected for s in resumed.manifest.selections]
    # The teacher is part of the state: a resumed run's teacher equals the uninterrupted one's.
    ta = read_state(tmp_path / "full" / "state")["teacher"]
    tb = read_state(tmp_path / "resumed" / "state")["teacher"]
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_resume_with_other_self_training_settings_is_refused(demo, tmp_path: Path) -> None:
    adapt(_dacs(demo, tmp_path / "run"), stop_after=2)
    with pytest.raises(RunFolderError, match="confidence"):
        adapt(replace(_dacs(demo, tmp_path / "run"), self_training=replace(LOW, confidence=0.9), resume=True))
    with pytest.raises(RunFolderError, match="source\\+target"):
        adapt(AdaptOptions(source=demo.source_dir, out=tmp_path / "run", backbone="tiny", train=SMALL, resume=True))


def test_target_without_the_run_bands_is_a_clear_error(demo, tmp_path: Path) -> None:
    folder = tmp_path / "rgb"
    folder.mkdir()
    image = next((demo.target_dir / "images").glob("*.tif"))
    with rasterio.open(image) as src:
        profile = src.profile | {"count": 3}
        data = src.read([1, 2, 3])
    with rasterio.open(folder / "three_bands.tif", "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("blue", "green", "red")
    options = replace(_dacs(demo, tmp_path / "run"), target=folder)
    with pytest.raises(DataError, match=r"three_bands\.tif.*nir") as info:
        adapt(options)
    assert "do not hold the run's bands" in str(info.value)
    assert not (tmp_path / "run").exists()  # checked before anything was written or trained


def test_meaningless_combinations_are_refused(demo, dacs_run: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not both"):
        adapt(replace(_from(demo, dacs_run, tmp_path / "x"), source=demo.source_dir))
    with pytest.raises(InputError, match="needs --target"):
        adapt(replace(_from(demo, dacs_run, tmp_path / "x"), target=None))
    with pytest.raises(InputError, match="confidence"):
        adapt(replace(_dacs(demo, tmp_path / "x"), self_training=SelfTrainConfig(confidence=1.5)))
    with pytest.raises(InputError, match="is the run given to --from"):
        adapt(replace(_from(demo, dacs_run, dacs_run), overwrite=True))
    assert read_manifest(dacs_run).status == "complete"
    runner = CliRunner()
    result = runner.invoke(app, ["adapt", "--from", str(dacs_run), "--target", str(demo.target_dir), "-o", str(tmp_path / "y"), "--backbone", "tiny"])
    assert result.exit_code == 2 and "--backbone" in result.output and "earlier run" in result.output
    result = runner.invoke(app, ["adapt", "-o", str(tmp_path / "y")])
    assert result.exit_code == 2 and "SOURCE" in result.output


def test_cli_source_plus_target(demo, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "adapt",
            str(demo.source_dir),
            "--target",
            str(demo.target_dir),
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
            "--confidence",
            "0.5",
            "--ema",
            "0.9",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "source+target" in result.output and "pseudo-labels at step" in result.output
    manifest = read_manifest(out)
    assert manifest.adaptation.self_training.confidence == 0.5 and manifest.adaptation.self_training.ema == 0.9
    continued = runner.invoke(
        app,
        [
            "adapt",
            "--from",
            str(out),
            "--target",
            str(demo.target_dir),
            "-o",
            str(tmp_path / "cont"),
            "--steps",
            "2",
            "--crop",
            "32",
            "--batch-size",
            "2",
            "--fisher-samples",
            "2",
            "--select",
            "1",
            "--confidence",
            "0.5",
            "--target-norm",
            "source",
        ],
    )
    assert continued.exit_code == 0, continued.output
    assert "(target)" in continued.output
    again = read_manifest(tmp_path / "cont")
    assert again.mode == "target" and again.adaptation.normalization == "source"
    assert again.normalization == manifest.normalization  # --target-norm source: the continued run's statistics
