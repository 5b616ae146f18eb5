"""Each command with no optional flags passes exactly the library's defaults to its library call.

The defaults live in the library's option dataclasses (and the library functions' signatures);
a command only maps flags. So a Python caller that leaves everything out gets the run, maps or
page that the command line gives without flags. Each test here runs a command with only what
it requires, catches the options it hands to the library, and compares them with the defaults.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.errors import InputError
from cegate_cli.options.adapt import AdaptOptions
from cegate_cli.options.demo import DemoOptions
from cegate_cli.options.report import ReportOptions
from cegate_cli.options.train import SelfTrainConfig, TrainConfig
from cegate_cli.predict.map_options import MapOptions
from cegate_cli.predict.vector_options import VectorOptions
from cegate_cli.toolbox.config import ToolboxConfig


class _Called(Exception):
    """Raised by a stand-in library function once it has the command's arguments."""


def _catch(monkeypatch: pytest.MonkeyPatch, target: str) -> dict[str, Any]:
    """Replace the library function at `target` by one that records its arguments and stops."""
    seen: dict[str, Any] = {}

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        seen.update(args=args, kwargs=kwargs)
        raise _Called

    monkeypatch.setattr(target, stand_in)
    return seen


def _run(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, _Called), result.output


def _default(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def _cli_adapt_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *flags: str) -> AdaptOptions:
    seen = _catch(monkeypatch, "cegate_cli.pipelines.adapt.adapt")
    _run(["adapt", str(tmp_path / "source"), "-o", str(tmp_path / "run"), *flags])
    options = seen["args"][0]
    assert isinstance(options, AdaptOptions)
    return options


def test_adapt_without_flags_passes_the_library_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()
    options = _cli_adapt_options(monkeypatch, tmp_path)
    library = AdaptOptions(source=tmp_path / "source", out=tmp_path / "run", saved_config=options.saved_config)
    assert options == library
    # What the command line has always trained with at its defaults, derived values included.
    assert (options.train.warmup_steps, options.train.save_every) == (25, 50)
    assert options.toolbox.lora_alpha == 16.0 and options.self_training.stats_every == 6


def test_adapt_and_the_library_derive_the_same_defaults_from_the_same_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Warm-up, save interval, LoRA alpha and statistics interval follow --steps and --lora-rank
    the same way for a Python caller as on the command line (the values the command line has
    always derived: a tenth of the steps up to 25, the save interval capped at the steps, alpha
    twice the rank, statistics every fiftieth of the steps)."""
    tmp_path = tmp_path.resolve()
    options = _cli_adapt_options(monkeypatch, tmp_path, "--steps", "100", "--lora-rank", "4", "--save-every", "500")
    library = AdaptOptions(
        source=tmp_path / "source",
        out=tmp_path / "run",
        saved_config=options.saved_config,
        train=TrainConfig(steps=100, save_every=500),
        toolbox=ToolboxConfig(lora_rank=4),
    )
    assert options == library
    assert (options.train.warmup_steps, options.train.save_every) == (10, 100)
    assert options.toolbox.lora_alpha == 8.0 and options.self_training.stats_every == 2
    # Given values win over derived ones; a save interval below 1 is kept, for check() to refuse by name.
    assert TrainConfig(steps=100, warmup_steps=3, save_every=0).warmup_steps == 3
    with pytest.raises(InputError, match="--save-every 0: must be at least 1"):
        TrainConfig(steps=100, save_every=0).check()
    assert ToolboxConfig(lora_rank=4, lora_alpha=4.0).lora_alpha == 4.0
    assert SelfTrainConfig(stats_every=7).for_steps(100).stats_every == 7


def test_predict_without_flags_passes_the_library_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cegate_cli.pipelines.inference import predict_run

    seen = _catch(monkeypatch, "cegate_cli.pipelines.inference.predict_run")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    _run(["predict", str(tmp_path / "run"), str(tmp_path / "scene.tif"), "-o", str(tmp_path / "maps")])
    kwargs = seen["kwargs"]
    assert kwargs["options"] == _default(predict_run, "options") == MapOptions()
    assert kwargs["vectors"] == _default(predict_run, "vectors") == VectorOptions()
    assert kwargs["overwrite"] == _default(predict_run, "overwrite")


def test_evaluate_without_flags_passes_the_library_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cegate_cli.pipelines.inference import evaluate_run

    seen = _catch(monkeypatch, "cegate_cli.pipelines.inference.evaluate_run")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    _run(["evaluate", str(tmp_path / "run"), str(tmp_path / "labeled")])
    kwargs = seen["kwargs"]
    assert kwargs["options"] == _default(evaluate_run, "options") == MapOptions()
    assert kwargs["keep_masks"] == _default(evaluate_run, "keep_masks")


def test_report_without_flags_passes_the_library_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cegate_cli.reporting.html_report import write_report

    seen = _catch(monkeypatch, "cegate_cli.reporting.html_report.write_report")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    _run(["report", str(tmp_path / "run")])
    args, kwargs = seen["args"], seen["kwargs"]
    assert args[1] == _default(write_report, "out")
    assert args[2] == _default(write_report, "options") == ReportOptions()
    assert kwargs["overwrite"] == _default(write_report, "overwrite")


def test_report_with_scenes_maps_them_with_the_library_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = _catch(monkeypatch, "cegate_cli.reporting.html_report.write_report")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    _run(["report", str(tmp_path / "run"), "--scenes", str(tmp_path / "scenes")])
    assert seen["args"][2].map_options == MapOptions()


def test_demo_without_flags_passes_the_library_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = _catch(monkeypatch, "cegate_cli.pipelines.demo.run_demo")
    monkeypatch.chdir(tmp_path)  # the default folder, cegate-demo, is relative
    _run(["demo"])
    assert seen["args"][0] == DemoOptions()


def test_pull_without_flags_passes_the_library_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from cegate_cli.backbone.hub import pull_backbone

    seen = _catch(monkeypatch, "cegate_cli.backbone.hub.pull_backbone")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    _run(["pull", "tiny"])
    assert seen["args"] == ("tiny",)
    assert seen["kwargs"] == {"revision": _default(pull_backbone, "revision"), "token": _default(pull_backbone, "token")}
