"""`cegate adapt --modules lora,adapter,earth,prompt` end to end on the timm, Eva and Galileo
families: prompt modules are scored and trained, their sizes and weights are in the run, they load
back, show in `inspect` and the report, and the run predicts and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from test_families import EVA_ARCH, EVA_ARGS, eva
from test_galileo_backbone import _labeled
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.run import load_run
from cegate_cli.toolbox.kinds import kind_spec

ALL_FOUR = "lora,adapter,earth,prompt"
TRAIN = [
    "--steps",
    "3",
    "--batch-size",
    "2",
    "--crop",
    "32",
    "--fisher-samples",
    "2",
    "--val-every",
    "3",
    "--selection",
    "fisher",
    "--select",
    "1.0",
    "--decoder",
    "linear",
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=80, seed=1)


def adapt_map_and_check(runner: CliRunner, data: Path, images: Path, run: Path, maps: Path, *flags: str) -> dict:
    """adapt with every kind and 3 prompt tokens, then the checks every family shares; run.json back."""
    trained = runner.invoke(app, ["adapt", str(data), "-o", str(run), "--modules", ALL_FOUR, "--prompt-tokens", "3", *TRAIN, *flags])
    assert trained.exit_code == 0, trained.output
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["toolbox"]["kinds"] == ALL_FOUR.split(",") and manifest["toolbox"]["prompt_tokens"] == 3
    assert "prompt" in manifest["selection"]["kinds"] and any(s["kind"] == "prompt" for s in manifest["selection"]["final"])
    loaded = load_run(run, device="cpu")
    prompts = {key: module for key, module in loaded.toolbox.modules.items() if key.kind == "prompt"}
    assert prompts and all(module.tokens == 3 for module in prompts.values())
    active = [key for key in loaded.toolbox.active_keys if key.kind == "prompt"]
    assert active
    with safe_open(str(run / "adapter.safetensors"), "pt") as saved:
        names = set(saved.keys())
        for key in active:
            assert {f"toolbox.prompt.{key.layer}.prompts", f"toolbox.prompt.{key.layer}.gate"} <= names
            gate = saved.get_tensor(f"toolbox.prompt.{key.layer}.gate")
            assert torch.equal(prompts[key].gate.detach(), gate)  # loaded as saved
    assert any(saved_gate != 0 for saved_gate in (prompts[key].gate.item() for key in active))  # trained off zero
    shown = runner.invoke(app, ["inspect", str(run)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "prompt" in shown.output, shown.output
    predicted = runner.invoke(app, ["predict", str(run), str(images), "-o", str(maps), "--tile", "32", "--overlap", "8", "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output
    first = min(images.glob("*.tif"))
    with rasterio.open(maps / f"{first.stem}.mask.tif") as mask, rasterio.open(first) as image:
        assert mask.shape == image.shape
    evaluated = runner.invoke(app, ["evaluate", str(run), str(data), "--json", "--tile", "32", "--overlap", "8", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["pixels"] > 0
    return manifest


def test_tiny_adapts_with_prompts_then_inspects_reports_predicts_and_evaluates(demo, tmp_path: Path) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    manifest = adapt_map_and_check(runner, demo.source_dir, demo.target_dir / "images", run, tmp_path / "maps", "--backbone", "tiny")
    scored = {s["kind"] for s in manifest["selection"]["history"][0]["scores"]}
    assert scored == set(ALL_FOUR.split(","))
    page = runner.invoke(app, ["report", str(run)])
    assert page.exit_code == 0, page.output
    html = (run / "report.html").read_text(encoding="utf-8")
    spec = kind_spec("prompt")
    assert f"style='background:{spec.color}'></span>{spec.title}</th>" in html


@pytest.mark.slow
def test_eva_adapts_with_prompts_then_predicts_and_evaluates(demo, tmp_path: Path) -> None:
    folder = tmp_path / "eva-backbone"
    folder.mkdir()
    config = {"architecture": EVA_ARCH, "model_args": EVA_ARGS, "band_names": ["red", "green", "blue"]}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in eva(seed=4).state_dict().items()}, str(folder / "model.safetensors"))
    manifest = adapt_map_and_check(CliRunner(), demo.source_dir, demo.target_dir / "images", tmp_path / "run", tmp_path / "maps", "--backbone", str(folder))
    assert manifest["backbone"]["architecture"] == EVA_ARCH


@pytest.mark.slow
def test_galileo_adapts_with_prompts_then_predicts_and_evaluates(tmp_path: Path) -> None:
    data = _labeled(tmp_path / "data")
    manifest = adapt_map_and_check(
        CliRunner(), data, data / "images", tmp_path / "run", tmp_path / "maps", "--backbone", "galileo-nano", "--patch-size", "4", "--month", "5"
    )
    assert manifest["backbone"]["architecture"] == "galileo-nano"
