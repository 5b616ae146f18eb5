"""`cegate adapt --config FILE`, `--print-config`, and the RUN/config.yaml that re-makes a run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from cegate_cli.backbone.galileo_backbone import GalileoOptions
from cegate_cli.cli import app
from cegate_cli.data.synthetic import make_demo_dataset
from cegate_cli.options.train import SelfTrainConfig, TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions
from cegate_cli.toolbox.config import ToolboxConfig

TINY = {"backbone": "tiny", "steps": 4, "batch-size": 2, "crop": 32, "val-every": 2, "fisher-samples": 2, "select": 3, "device": "cpu"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return make_demo_dataset(tmp_path_factory.mktemp("config") / "data", n_source=2, n_target=2, size=72, seed=3)


def _write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def test_print_config_is_a_template_of_every_option_with_the_library_defaults() -> None:
    result = CliRunner().invoke(app, ["adapt", "--print-config"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    values = yaml.safe_load(text)
    assert values["steps"] == TrainConfig.steps and values["lr"] == TrainConfig.lr and values["loss"] == TrainConfig.loss
    assert values["rare-crops"] == TrainConfig.rare_crops and values["select"] == TrainConfig.select
    assert values["class-weight-power"] == TrainConfig.class_weight_power
    assert values["confidence"] == SelfTrainConfig.confidence and values["ema"] == SelfTrainConfig.ema
    assert values["backbone"] == AdaptOptions.backbone and values["lora-rank"] == ToolboxConfig().lora_rank
    assert values["normalize"] == GalileoOptions.normalize
    assert "token" not in values and "config" not in values and "print-config" not in values
    # Every option of the command is there, each under a comment that says what it does.
    help_lines = CliRunner().invoke(app, ["adapt", "--help"], env={"COLUMNS": "250"}).stdout.splitlines()
    rows = [line.replace("*", " ").split() for line in help_lines if line.startswith("│")]  # * marks a required option
    flags = {row[1][2:] for row in rows if len(row) > 1 and row[1].startswith("--")}
    assert flags - {"help", "token", "config", "print-config"} | {"source"} == set(values)
    lines = text.splitlines()
    for key in values:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
        assert lines[index - 1].startswith("# "), key


def test_options_come_from_the_file_and_flags_win(data, tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    # Relative paths are taken from the file's folder; underscores work as well as dashes.
    source = os.path.relpath(data.source_dir, folder)
    tiny = {key: value for key, value in TINY.items() if key != "batch-size"}
    config = _write(folder / "adapt.yaml", {"source": source, **tiny, "out": "run", "batch_size": 3, "seed": 5})
    result = CliRunner().invoke(app, ["adapt", "--config", str(config), "--steps", "2", "-q"])
    assert result.exit_code == 0, result.output
    run = folder / "run"
    training = json.loads((run / "run.json").read_text())["training"]
    assert training["steps"] == 2  # the flag
    assert (training["batch_size"], training["seed"], training["crop"]) == (3, 5, 32)  # the file
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["steps"] == 2 and saved["batch-size"] == 3 and saved["out"] == str(run.resolve())
    assert saved["source"] == str(Path(data.source_dir).resolve())
    assert not {"overwrite", "resume", "quiet", "json", "threads", "token"} & set(saved)


def test_a_run_remade_from_its_config_yaml_trains_the_same_thing(data, tmp_path: Path) -> None:
    runner = CliRunner()
    first = tmp_path / "first"
    args = [
        "adapt",
        str(data.source_dir),
        "-o",
        str(first),
        "-b",
        "tiny",
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--val-every",
        "2",
        "--fisher-samples",
        "2",
        "--select",
        "3",
        "--device",
        "cpu",
        "--modules",
        "lora,adapter",
        "--no-augment",
        "--lr",
        "0.003",
        "-q",
    ]
    assert runner.invoke(app, args).exit_code == 0
    second = tmp_path / "second"
    again = runner.invoke(app, ["adapt", "--config", str(first / "config.yaml"), "-o", str(second), "-q"])
    assert again.exit_code == 0, again.output
    one, two = (json.loads((run / "run.json").read_text()) for run in (first, second))
    assert one["training"] == two["training"] and one["toolbox"] == two["toolbox"]
    assert one["selection"]["final"] == two["selection"]["final"] and one["backbone"]["source"] == two["backbone"]["source"]
    a, b = load_file(first / "adapter.safetensors"), load_file(second / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"stepz": 3}, "unknown option 'stepz' (did you mean 'steps'?); `cegate adapt --print-config` lists every option"),
        ({"steps": "many"}, "steps: 'many' is not a whole number"),
        ({"augment": "sometimes"}, "augment: 'sometimes' is not true or false"),
        ({"steps": 3, "steps_": 4}, "unknown option 'steps_' (did you mean 'steps'?); `cegate adapt --print-config` lists every option"),
        ({"token": "hf_secret"}, "'token' does not belong in a file; set HF_TOKEN or pass --token"),
        ({"batch-size": 2, "batch_size": 3}, "option 'batch-size' is given twice"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file_and_the_key(values: dict, message: str, data, tmp_path: Path) -> None:
    config = _write(tmp_path / "adapt.yaml", values)
    result = CliRunner().invoke(app, ["adapt", str(data.source_dir), "-o", str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"Error: {config}: {message}"
    assert not (tmp_path / "run").exists()


def test_a_missing_or_broken_config_file_is_a_clear_error(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["adapt", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "nope.yaml: no such file" in missing.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1, 2\n")
    result = runner.invoke(app, ["adapt", "--config", str(broken)])
    assert result.exit_code == 2 and f"{broken}: not valid YAML" in result.output
    listed = tmp_path / "list.yaml"
    listed.write_text("- steps\n- 3\n")
    result = runner.invoke(app, ["adapt", "--config", str(listed)])
    assert result.exit_code == 2 and "expected `option: value` lines" in result.output


def test_from_run_refuses_a_backbone_from_the_config_file(tmp_path: Path) -> None:
    config = _write(tmp_path / "adapt.yaml", {"backbone": "tiny", "target": str(tmp_path)})
    result = CliRunner().invoke(app, ["adapt", "--from", str(tmp_path / "earlier"), "-o", str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 2
    assert f"--backbone (set in {config}): with --from these come from the earlier run" in result.output


def test_a_printed_template_loads_as_written(tmp_path: Path) -> None:
    """`--print-config > a.yaml`, then `--config a.yaml SOURCE -o run`: the template's empty keys
    (out, source, ...) are not set, the command line gives them, and adapt goes on to the data."""
    runner = CliRunner()
    printed = runner.invoke(app, ["adapt", "--print-config"])
    assert printed.exit_code == 0
    config = tmp_path / "a.yaml"
    config.write_text(printed.stdout)
    assert yaml.safe_load(config.read_text())["out"] is None
    source = tmp_path / "no-such-folder"
    result = runner.invoke(app, ["adapt", "--config", str(config), str(source), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"Error: {source}: no such folder")  # past every option check
    # With --from too: the template's backbone, decoder and LoRA rank are its defaults, not requests.
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    continued = runner.invoke(app, ["adapt", "--config", str(config), "--from", str(earlier), "--target", str(source), "-o", str(tmp_path / "run2")])
    assert continued.exit_code == 2
    assert continued.output.strip() == f"Error: {earlier} is not a cegate run folder (no run.json); create one with `cegate adapt`"
    # A required option is still required: left empty in the file and not given, click says so.
    missing = runner.invoke(app, ["adapt", "--config", str(config), str(source)])
    assert missing.exit_code == 2 and "--out" in missing.output
