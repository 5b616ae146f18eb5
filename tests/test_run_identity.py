"""Weights that are not the run's own (issue 13): an adapter file copied from another run, one that
lacks a selected module, or a damaged one is refused by `predict` and `evaluate` with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from run_folder_helpers import error_line, small_options
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.pipelines.adapt import adapt
from cegate_cli.run import read_manifest


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=72, seed=1)


@pytest.fixture(scope="module")
def runs(demo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two complete runs of the same data that differ only in their seed."""
    root = tmp_path_factory.mktemp("runs")
    first = adapt(small_options(demo, root / "a")).run_dir
    second = adapt(small_options(demo, root / "b", seed=4)).run_dir
    return first, second


def _predict(run: Path, demo, out: Path):
    scene = sorted((demo.target_dir / "images").glob("*.tif"))[0]
    return CliRunner().invoke(app, ["predict", str(run), str(scene), "-o", str(out), "--tile", "48", "--overlap", "8", "--vector", "none", "--device", "cpu"])


def test_predict_and_evaluate_refuse_an_adapter_copied_from_another_run(demo, runs, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    assert _predict(run, demo, tmp_path / "ok").exit_code == 0
    shutil.copy(runs[1] / "adapter.safetensors", run / "adapter.safetensors")
    result = _predict(run, demo, tmp_path / "out")
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    assert str(run / "adapter.safetensors") in line and "belong to" in line
    assert not list((tmp_path / "out").glob("*.mask.tif"))
    evaluated = CliRunner().invoke(app, ["evaluate", str(run), str(demo.target_labels_dir), "--tile", "48", "--overlap", "8"])
    assert evaluated.exit_code == 2 and "adapter.safetensors" in error_line(evaluated.output)


def test_predict_refuses_weights_missing_a_selected_module(demo, runs, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    manifest = read_manifest(run)
    kind, layer = manifest.best_selection[0]
    path = run / "adapter.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = {k: v for k, v in load_file(str(path)).items() if not k.startswith(f"toolbox.{kind}.{layer}.")}
    save_file(tensors, str(path), metadata=metadata)  # the run's own id, one module short
    result = _predict(run, demo, tmp_path / "out")
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    assert "adapter.safetensors" in line and f"{kind}@{layer}" in line


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_predict_names_a_damaged_adapter_file(demo, runs, tmp_path: Path, damage: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    path = run / "adapter.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    result = _predict(run, demo, tmp_path / "out")
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    assert str(path) in line and "damaged" in line


@pytest.mark.parametrize("edit", ["one class more", "another decoder"])
def test_a_run_json_edited_after_training_is_one_line_naming_the_difference(demo, runs, tmp_path: Path, edit: str) -> None:
    """torch lists every mismatched tensor on a line of its own; the user gets the first and a count."""
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    record = json.loads((run / "run.json").read_text())
    if edit == "one class more":
        record["classes"]["classes"].append({"id": len(record["classes"]["classes"]), "name": "extra", "color": [1, 2, 3]})
        expected = "classifier.bias is 4 in the weights, run.json's model needs 5, and 3 more difference(s)"
    else:
        record["training"]["decoder"] = "linear"
        expected = "saved weight(s) have no place in run.json's model"
    (run / "run.json").write_text(json.dumps(record))
    result = _predict(run, demo, tmp_path / "out")
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    assert str(run) in line and expected in line and "was run.json edited" in line, line
