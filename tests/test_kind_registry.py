"""A module kind is one registration: a kind defined here, in a test module, and registered from
it, attaches, starts as an identity, is scored by Fisher, has its sizes in the toolbox config and
run.json, sorts with the other kinds, trains, saves and loads, and shows in `inspect` and the
HTML report, with no other file edited. The kind, `probe`, takes a whole block's place and sorts
before LoRA, so LoRA finds the block's attention under it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cegate_cli.backbone.tiny import TINY_BANDS, build_tiny_vit
from cegate_cli.backbone.vit import Backbone
from cegate_cli.cli import app
from cegate_cli.data.synthetic import make_demo_dataset
from cegate_cli.errors import InputError
from cegate_cli.model.segmentation import build_model
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.reporting.html_report import write_report
from cegate_cli.run import load_run, read_manifest
from cegate_cli.toolbox.attach import attach_toolbox
from cegate_cli.toolbox.base import BlockSite, ToolboxModule
from cegate_cli.toolbox.config import ToolboxConfig
from cegate_cli.toolbox.fisher import empirical_fisher
from cegate_cli.toolbox.kinds import KindOptions, KindSpec, kind_names, parse_kinds, register_kind, unregister_kind
from cegate_cli.toolbox.lora.layer import LoRA
from cegate_cli.toolbox.module_key import ModuleKey, in_order

COLOR = "#a0522d"


@dataclass(frozen=True)
class ProbeOptions(KindOptions):
    width: int = field(default=4, metadata={"help": "Bottleneck width of the probe."})

    def check(self) -> None:
        if self.width < 1:
            raise InputError(f"probe width {self.width}: must be at least 1")


class Probe(ToolboxModule):
    """The block, then a zero-initialised bottleneck on its output tokens."""

    kind = "probe"

    def __init__(self, block: nn.Module, layer: int, dim: int, width: int) -> None:
        super().__init__(layer)
        self.base_layer = block
        self.down = nn.Linear(dim, width)
        self.up = nn.Linear(width, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, tokens: torch.Tensor, **kwargs: object) -> torch.Tensor:
        out = self.base_layer(tokens, **kwargs)
        return out + self.up(self.down(out)) if self.active else out


def attach_probe(site: BlockSite, options: ProbeOptions) -> Probe:
    probe = Probe(site.block, site.layer, site.dim, options.width)
    site.replace_block(probe)
    return probe


SPEC = KindSpec(
    name="probe",
    position=5,
    label="test (a bottleneck on the block output)",
    title="Probe (test)",
    color=COLOR,
    options=ProbeOptions,
    attach=attach_probe,
    fisher_parameters=("up.*",),
)


@pytest.fixture()
def probe_kind():
    register_kind(SPEC)
    try:
        yield SPEC
    finally:
        unregister_kind(SPEC.name)
    assert "probe" not in ToolboxConfig().kinds  # gone again for every other test


def images(channels: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, channels, 32, 48, generator=torch.Generator().manual_seed(seed))


def test_a_kind_registered_from_outside_attaches_as_an_identity_and_fisher_scores_it(probe_kind) -> None:
    backbone = Backbone(build_tiny_vit().vit).eval()
    x = images(backbone.in_chans)
    with torch.no_grad():
        before = backbone(x)
        toolbox = attach_toolbox(backbone, ToolboxConfig(kinds=("lora", "probe"), probe_width=3))
        after = backbone(x)
    assert toolbox.keys()[:3] == [("probe", 0), ("lora", 0), ("probe", 1)]  # by block, then position
    for layer in range(backbone.depth):
        probe = toolbox.modules[("probe", layer)]
        assert backbone.vit.blocks[layer] is probe and probe.down.out_features == 3
        assert isinstance(probe.base_layer.attn.qkv, LoRA)  # LoRA found the attention under the probe
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert sorted(toolbox.state_dict_of([("probe", 1)])) == [f"toolbox.probe.1.{p}" for p in ("down.bias", "down.weight", "up.bias", "up.weight")]
    # Once trained it changes the features, and bypassed it is the block again.
    with torch.no_grad():
        for probe in (toolbox.modules[("probe", layer)] for layer in range(backbone.depth)):
            probe.up.weight.normal_(0, 0.05)
        moved = backbone(x)
        toolbox.set_active([key for key in toolbox.keys() if key.kind == "lora"])
        bypassed = backbone(x)
    assert (moved[-1] - before[-1]).abs().max().item() > 1e-3
    assert all(torch.equal(a, b) for a, b in zip(before, bypassed))
    # Fisher scores the parameters the kind names, and only those.
    toolbox.activate_all()
    for probe in (toolbox.modules[("probe", layer)] for layer in range(backbone.depth)):
        nn.init.zeros_(probe.up.weight)
    assert toolbox.scored_parameters(ModuleKey("probe", 2)) == [toolbox.modules[("probe", 2)].up.weight, toolbox.modules[("probe", 2)].up.bias]
    built = build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(kinds=("lora", "probe")), "linear", seed=0)
    samples = [(images(len(TINY_BANDS), seed)[0], torch.randint(0, 3, (32, 48), generator=torch.Generator().manual_seed(seed))) for seed in range(2)]
    scores = empirical_fisher(built.model, built.toolbox, samples, nn.functional.cross_entropy)
    assert all(scores.raw[("probe", layer)] > 0 for layer in range(built.toolbox.backbone.depth))


def test_a_registered_kind_is_in_the_config_the_order_and_the_kind_words(probe_kind) -> None:
    assert kind_names() == ("probe", "lora", "adapter", "earth", "prompt")
    assert ToolboxConfig().kinds == parse_kinds(None) == ("probe", "lora", "adapter", "earth")  # prompt: only when named
    assert parse_kinds("probe,lora") == ("probe", "lora")
    assert in_order([("earth", 0), ("lora", 1), ("probe", 1), ("lora", 0), ("probe", 0)]) == [
        ("probe", 0),
        ("lora", 0),
        ("earth", 0),
        ("probe", 1),
        ("lora", 1),
    ]
    config = ToolboxConfig(kinds=("probe",), probe_width=6, lora_rank=2)
    data = config.to_dict()
    assert data["probe_width"] == 6 and data["lora_rank"] == 2 and config.probe_width == 6
    assert ToolboxConfig.from_dict(data) == config
    assert replace(config, probe_width=7).probe_width == 7 and replace(config, kinds=("lora",)).probe_width == 6
    with pytest.raises(InputError, match="probe width 0: must be at least 1"):
        ToolboxConfig(probe_width=0).check()
    with pytest.raises(TypeError, match="probe_depth"):
        ToolboxConfig(probe_depth=2)


def test_a_run_with_a_registered_kind_trains_saves_loads_and_shows_in_inspect_and_report(probe_kind, tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "data", n_source=3, n_target=1, size=48, seed=3)
    kinds = ("lora", "probe")
    train = TrainConfig(steps=2, batch_size=2, crop=32, warmup_steps=1, val_every=0, save_every=2, fisher_samples=2, select="1.0", seed=0, device="cpu")
    run = adapt(
        AdaptOptions(source=data.source_dir, out=tmp_path / "run", backbone="tiny", kinds=kinds, toolbox=ToolboxConfig(kinds=kinds, probe_width=2), train=train)
    ).run_dir
    manifest = read_manifest(run)
    assert manifest.toolbox.kinds == kinds and manifest.toolbox.probe_width == 2
    assert {key.kind for key in manifest.final_selection} == set(kinds)
    loaded = load_run(run, device="cpu")
    probe = loaded.toolbox.modules[("probe", 0)]
    assert probe.down.out_features == 2 and probe.up.weight.abs().sum() > 0  # trained weights came back
    shown = CliRunner().invoke(app, ["inspect", str(run)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "probe" in shown.output
    page = write_report(run).path.read_text(encoding="utf-8")
    assert f"style='background:{COLOR}'></span>Probe (test)</th>" in page
    assert page.count(f"class='dot' style='background:{COLOR}'") > 0  # the selection history, in the kind's colour


def test_a_library_run_whose_kinds_are_not_in_its_toolbox_is_refused_in_one_line(tmp_path: Path) -> None:
    """`AdaptOptions.kinds` (what selection chooses from) and `ToolboxConfig.kinds` (what is built)
    set apart: a kind selection may choose that the toolbox lacks is named, not a traceback."""
    data = make_demo_dataset(tmp_path / "data", n_source=2, n_target=1, size=48, seed=3)
    train = TrainConfig(steps=1, batch_size=2, crop=32, val_every=0, fisher_samples=2, device="cpu")
    with pytest.raises(InputError, match=r"module kinds lora, adapter, earth are not in the toolbox this run builds \(prompt\)"):
        adapt(AdaptOptions(source=data.source_dir, out=tmp_path / "run", backbone="tiny", toolbox=ToolboxConfig(kinds=("prompt",)), train=train))
    assert not (tmp_path / "run" / "run.json").exists()
