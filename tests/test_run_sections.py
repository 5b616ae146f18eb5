"""run.json's sections as typed records: run.json files written by cegate before the sections had
classes (tests/run_records: a Galileo-nano run, a source+target run, a run continued on a target
with --from, a run stopped before its end) read back into them and write out exactly as they were;
a value of the wrong type names its field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cegate_cli.backbone.galileo_options import GalileoInputs, GroupFill
from cegate_cli.errors import RunFolderError
from cegate_cli.options.train import SelfTrainConfig
from cegate_cli.run import read_manifest

RECORDS = Path(__file__).resolve().parent / "run_records"


def _run(tmp_path: Path, data: dict[str, Any]) -> Path:
    run = tmp_path / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps(data))
    return run


def _record(name: str) -> dict[str, Any]:
    return json.loads((RECORDS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["galileo", "dacs", "fromrun", "stopped"])
def test_an_earlier_run_json_reads_into_the_sections_and_writes_out_unchanged(name: str, tmp_path: Path) -> None:
    data = _record(name)
    assert read_manifest(_run(tmp_path, data)).to_dict() == data


def test_the_sections_answer_by_attribute(tmp_path: Path) -> None:
    galileo = read_manifest(_run(tmp_path / "g", _record("galileo")))
    assert galileo.backbone.source.kind == "galileo" and galileo.backbone.depth == 4
    assert galileo.backbone.inputs == GalileoInputs(4, 10.0, 6, "pretrained", "default")  # what predict feeds Galileo
    assert galileo.backbone.family.groups[0] == GroupFill("S2_RGB", ("blue", "green", "red"))
    assert galileo.data.label_counts == {0: 1878, 1: 4475, 2: 1646, 3: 3265}
    assert not galileo.metrics.calibrated and galileo.saved_val_miou == galileo.metrics.best_val_miou  # no class score moved
    assert galileo.adaptation is None and galileo.parameters.trainable_share > 0

    dacs = read_manifest(_run(tmp_path / "d", _record("dacs")))
    assert isinstance(dacs.adaptation.self_training, SelfTrainConfig) and dacs.adaptation.target_images == 2
    assert dacs.metrics.validation == "source images" and dacs.backbone.inputs is None  # the tiny ViT takes none
    continued = read_manifest(_run(tmp_path / "f", _record("fromrun")))
    assert continued.data.from_run is not None and continued.data.label_counts == {}
    assert continued.metrics.self_training and continued.metrics.validation is None and "validation" in continued.to_dict()["metrics"]

    stopped = read_manifest(_run(tmp_path / "t", _record("stopped")))
    assert stopped.metrics.calibrated and stopped.saved_val_miou == stopped.metrics.calibration["val_miou_after"] > stopped.metrics.best_val_miou
    started = _record("stopped")
    started.update(status="training", metrics={}, timing={}, parameters={})  # as written when a run starts
    fresh = read_manifest(_run(tmp_path / "s", started))
    assert fresh.metrics is None and fresh.timing is None and fresh.parameters is None and fresh.saved_val_miou is None
    assert fresh.to_dict() == started


@pytest.mark.parametrize(
    "name,change,expected",
    [
        ("galileo", lambda d: d["data"].update(train_images="x"), "data.train_images is 'x', not a list of names"),
        ("galileo", lambda d: d["metrics"].update(val_history=[[2, "high"]]), "metrics.val_history[0][1] is 'high', not a number"),
        ("galileo", lambda d: d["backbone"]["galileo"].update(month="July"), "backbone.galileo.month is 'July', not a whole number"),
        ("galileo", lambda d: d["backbone"]["band_mapping"][0].update(copied_from=[1]), "backbone.band_mapping[0].copied_from is [1]"),
        ("galileo", lambda d: d["backbone"]["source"].update(kind="clay-v9"), "unknown kind 'clay-v9'"),
        ("galileo", lambda d: d["timing"].update(device=None), "timing.device is null; it needs text"),
        ("galileo", lambda d: d["data"].update(label_pixels={"0": "many"}), "data.label_pixels.0 is 'many', not a whole number"),
        ("dacs", lambda d: d["adaptation"].update(target_images=1.5), "adaptation.target_images is 1.5, not a whole number"),
        ("dacs", lambda d: d["adaptation"].pop("mode"), "adaptation is damaged"),
        ("dacs", lambda d: d.update(adaptation=[]), "adaptation is not an object of fields"),
    ],
)
def test_a_wrong_value_in_a_section_names_the_field(name: str, change: Callable[[dict], Any], expected: str, tmp_path: Path) -> None:
    data = _record(name)
    change(data)
    with pytest.raises(RunFolderError) as err:
        read_manifest(_run(tmp_path, data))
    assert expected in str(err.value) and str(tmp_path / "run" / "run.json") in str(err.value)
