"""Ctrl-C during `predict` and `evaluate` (issue 32): one line saying which scenes were finished,
where it stopped, that nothing half-written is left and how to map the rest; exit code 130."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from data_rasters import write_tif
from predict_rasters import band_stats, class_table, pixel_model, random_scene, write_scene
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.errors import MappingInterrupted
from cegate_cli.pipelines import inference
from cegate_cli.predict import PredictOptions, predict_many
from cegate_cli.predict.batch import BatchSummary, FileOutcome, interrupted, output_paths

OPTIONS = PredictOptions(tile=32, overlap=0, batch_size=1, confidence=True)


class CtrlCAt(torch.nn.Module):
    """The pixel model, until its `at`-th call: there the user presses Ctrl-C."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.model, self.calls, self.at = pixel_model(), 0, at

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.model(pixels)


def _scenes(folder: Path, count: int) -> list[Path]:
    return [write_scene(folder / f"scene_{i}.tif", random_scene(64, 64, seed=i)) for i in range(count)]


def test_ctrl_c_names_the_finished_scenes_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path / "in", 4)
    out = tmp_path / "out"
    model = CtrlCAt(at=6)  # 4 tiles a scene: the second scene is half mapped
    with pytest.raises(MappingInterrupted) as err:
        predict_many(model, scenes, out, bands=(1, 2, 3), stats=band_stats(3), class_table=class_table(4), options=OPTIONS)
    message = str(err.value)
    assert message.startswith(f"Interrupted: {out}: 1 of 4 scenes finished (scene_0.tif), stopped in scene_1.tif, ")
    assert "nothing half-written" in message and "2 not started" in message and "run the same command again" in message
    assert "\n" not in message and err.value.finished == (scenes[0],) and isinstance(err.value, KeyboardInterrupt)
    left = sorted(p.name for p in out.iterdir())
    assert [name for name in left if not name.startswith("scene_0.")] == [], left  # no temporary, no part of scene_1
    assert {"scene_0.mask.tif", "scene_0.confidence.tif", "scene_0.geojson"} <= set(left)
    again = predict_many(pixel_model(), scenes, out, bands=(1, 2, 3), stats=band_stats(3), class_table=class_table(4), options=OPTIONS)
    assert [o.status for o in again.outcomes] == ["skipped", "done", "done", "done"]  # as the message promised


def test_ctrl_c_with_overwrite_says_to_rerun_without_it(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path / "in", 2)
    with pytest.raises(MappingInterrupted, match="1 not started; run the same command without --overwrite to map the rest"):
        predict_many(CtrlCAt(at=1), scenes, tmp_path / "out", bands=(1, 2, 3), stats=band_stats(3), class_table=class_table(4), options=OPTIONS, overwrite=True)


def test_cli_prints_the_interrupt_as_one_line_and_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenes = [tmp_path / "a.tif", tmp_path / "b.tif"]

    def stopped(*args: object, **kwargs: object) -> None:
        raise interrupted(BatchSummary(), scenes, 0, tmp_path / "out", False)

    monkeypatch.setattr(inference, "predict_run", stopped)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(tmp_path), "-o", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 130, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        f"Interrupted: {tmp_path / 'out'}: 0 of 2 scenes finished, stopped in a.tif, which left nothing half-written "
        "(outputs take their names only once complete), 1 not started; run the same command again to map the rest "
        "(finished scenes are skipped)"
    ]


@pytest.fixture()
def labeled(tmp_path: Path) -> Path:
    root = tmp_path / "labeled"
    for stem in ("a", "b", "c"):
        write_scene(root / "images" / f"{stem}.tif", random_scene(32, 32))
        write_tif(root / "masks" / f"{stem}.tif", np.zeros((32, 32), np.uint8))
    return root


@pytest.mark.parametrize("keep", [False, True])
def test_ctrl_c_during_evaluate_says_nothing_was_scored_and_where_the_masks_are(
    labeled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: bool
) -> None:
    table = class_table(2)
    monkeypatch.setattr(inference, "read_manifest", lambda run: SimpleNamespace(classes=table))
    monkeypatch.setattr(inference, "load_for_inference", lambda run, options: SimpleNamespace(manifest=SimpleNamespace(classes=table)))

    def map_one_then_stop(loaded, sources, out_dir, *args: object) -> None:
        first = FileOutcome(sources[0], "done", output_paths(sources[0], out_dir, vector_format=None, confidence=False))
        raise interrupted(BatchSummary([first]), list(sources), 1, out_dir, True)

    monkeypatch.setattr(inference, "_map_scenes", map_one_then_stop)
    keep_masks = tmp_path / "masks" if keep else None
    with pytest.raises(MappingInterrupted) as err:
        inference.evaluate_run(tmp_path / "run", labeled, keep_masks=keep_masks)
    message = str(err.value)
    assert message.startswith(f"Interrupted: {labeled}: 1 of 3 images mapped, none scored (scores are printed once every image is mapped); ")
    where = f"their masks are complete in {keep_masks}, nothing half-written" if keep else "scratch folder and are removed"
    assert where in message and message.endswith("; run the same command again to evaluate")
