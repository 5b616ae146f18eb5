"""Fisher-guided selection: scores equal to hand-computed squared gradients, per-kind
normalisation, top-k, the --select grammar, and the model left as it was found."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from cegate_cli.backbone.tiny import TINY_BANDS, build_tiny_vit
from cegate_cli.errors import InputError
from cegate_cli.model.segmentation import build_model
from cegate_cli.toolbox import Toolbox, ToolboxConfig, ToolboxModule
from cegate_cli.toolbox.fisher import (
    FisherScores,
    Selection,
    empirical_fisher,
    normalize_within_kind,
    parse_select,
    select_top,
)

# -- a toy whose squared gradients are known in closed form ---------------------------------------
#
# Module m owns a weight vector w_m and reads its own slice x_m of the input; the model outputs
# sum over active m of <w_m, x_m>, and the loss is (output + 1) * target. So d loss / d w_m =
# target * x_m and the empirical Fisher of m is mean over samples of target^2 * |x_m|^2, whatever w
# is. (The + 1 keeps the loss non-zero at w = 0: a zero loss marks a crop with no usable label.)


class _ToyLora(ToolboxModule):
    kind = "lora"

    def __init__(self, layer: int, width: int) -> None:
        super().__init__(layer)
        self.weight = nn.Parameter(torch.zeros(width))


class _ToyEarth(_ToyLora):
    kind = "earth"


class _ToyBackbone(nn.Module):
    grad_from_layer = 0


class _ToyModel(nn.Module):
    def __init__(self, toolbox: Toolbox, slices: dict[tuple[str, int], slice]) -> None:
        super().__init__()
        self.toolbox = toolbox
        self.slices = slices
        self.seen_active: list[list[tuple[str, int]]] = []
        self.seen_grad_from: list[int] = []
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_active.append(self.toolbox.active_keys)
        self.seen_grad_from.append(self.toolbox.backbone.grad_from_layer)
        self.seen_training.append(self.training)
        out = x.new_zeros(x.shape[0])
        for key in self.toolbox.active_keys:
            out = out + (self.toolbox.modules[key].weight * x[:, self.slices[key]]).sum(-1)
        return out


def toy() -> tuple[_ToyModel, Toolbox, dict[tuple[str, int], slice]]:
    widths = {("lora", 1): 3, ("earth", 1): 1, ("lora", 2): 3, ("earth", 2): 1, ("lora", 3): 3, ("earth", 3): 1}
    modules: dict[tuple[str, int], ToolboxModule] = {}
    slices, start = {}, 0
    for (kind, layer), width in widths.items():
        modules[(kind, layer)] = (_ToyLora if kind == "lora" else _ToyEarth)(layer, width)
        slices[(kind, layer)] = slice(start, start + width)
        start += width
    toolbox = Toolbox(_ToyBackbone(), modules, ToolboxConfig())  # type: ignore[arg-type]
    model = _ToyModel(toolbox, slices)
    return model, toolbox, slices


def product_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((output + 1) * target).sum()


def test_scores_are_the_mean_squared_gradient_per_module() -> None:
    model, toolbox, slices = toy()
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(12, generator=generator) * scale for scale in (1.0, 2.0, 0.5)]
    inputs[1][slices[("lora", 3)]] *= 10  # one module clearly carries the most gradient
    targets = [torch.tensor(1.5), torch.tensor(-0.5), torch.tensor(2.0)]
    samples = list(zip(inputs, targets)) + [(torch.randn(12), torch.tensor(0.0))]  # zero loss: skipped

    scores = empirical_fisher(model, toolbox, samples, product_loss)

    assert scores.samples == 3
    for key, part in slices.items():
        expected = sum(float(t) ** 2 * float(x[part].square().sum()) for x, t in zip(inputs, targets)) / 3
        assert scores.raw[key] == pytest.approx(expected, rel=1e-5), key
    assert scores.normalized == normalize_within_kind(scores.raw)
    assert select_top(scores.normalized, 1) == [("lora", 3)]


def test_every_scored_module_is_switched_on_and_the_previous_state_restored() -> None:
    model, toolbox, _ = toy()
    model.train()
    toolbox.set_active([("earth", 3)])
    toolbox.backbone.grad_from_layer = 3
    keys = [("lora", 2), ("earth", 2), ("lora", 3)]
    samples = [(torch.randn(12), torch.tensor(1.0)) for _ in range(2)]

    scores = empirical_fisher(model, toolbox, samples, product_loss, keys=keys)

    assert set(scores.raw) == set(keys)
    assert model.seen_active == [sorted(keys, key=lambda k: (k[1], k[0] != "lora"))] * 2
    assert model.seen_grad_from == [2, 2]  # autograd only from the lowest scored layer
    assert model.seen_training == [False, False]  # measured in eval mode
    assert toolbox.active_keys == [("earth", 3)]
    assert toolbox.backbone.grad_from_layer == 3
    assert model.training
    for key, module in toolbox.modules.items():
        assert module.weight.requires_grad == (key == ("earth", 3))


def test_state_is_restored_even_when_scoring_fails() -> None:
    model, toolbox, _ = toy()
    toolbox.set_active([("lora", 1)])

    def broken_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        empirical_fisher(model, toolbox, [(torch.randn(12), torch.tensor(1.0))], broken_loss)
    assert toolbox.active_keys == [("lora", 1)]
    assert toolbox.backbone.grad_from_layer == 0


def test_no_usable_sample_is_an_input_error() -> None:
    model, toolbox, _ = toy()
    samples = [(torch.randn(12), torch.tensor(0.0)), (torch.randn(12), torch.tensor(float("nan")))]
    with pytest.raises(InputError, match="no training crop"):
        empirical_fisher(model, toolbox, samples, product_loss)


# -- on the real model: a loss that only some modules can reach --------------------------------------


class _FirstLevel(nn.Module):
    """Segmentation stand-in whose output is the first feature level (block 1) only."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[0]


def test_selection_picks_the_modules_the_loss_depends_on() -> None:
    built = build_model(build_tiny_vit(), TINY_BANDS, 2, ToolboxConfig(lora_rank=4))
    toolbox = built.toolbox
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in toolbox:
            for parameter in module.own_parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    backbone = built.model.backbone
    assert backbone.feature_layers[0] == 1
    toolbox.set_active([("adapter", 5)])
    samples = [(torch.randn(4, 32, 48, generator=generator), torch.randn(96, 4, 6, generator=generator)) for _ in range(2)]

    scores = empirical_fisher(_FirstLevel(backbone), toolbox, samples, lambda out, target: (out - target).square().mean())

    reachable = {key for key in toolbox.keys() if key[1] <= 1}
    for key, value in scores.raw.items():
        assert (value > 0) == (key in reachable), (key, value)
    assert set(select_top(scores.normalized, len(reachable))) == reachable
    assert toolbox.active_keys == [("adapter", 5)]  # the training selection is back
    assert backbone.grad_from_layer == 0


# -- normalisation and top-k ------------------------------------------------------------------------


def test_normalisation_is_within_each_kind() -> None:
    raw = {
        ("lora", 0): 100.0,
        ("lora", 1): 200.0,
        ("lora", 2): 300.0,
        ("earth", 0): 1.0,
        ("earth", 1): 2.0,
        ("earth", 2): 6.0,
        ("adapter", 0): 0.0,
        ("adapter", 1): 0.0,
        ("adapter", 2): 0.0,
    }
    normalized = normalize_within_kind(raw)
    assert normalized[("lora", 0)] == pytest.approx(0.5)
    assert normalized[("lora", 2)] == pytest.approx(1.5)
    assert normalized[("earth", 2)] == pytest.approx(2.0)
    assert all(normalized[("adapter", i)] == 0.0 for i in range(3))  # an all-zero kind stays zero
    for kind in ("lora", "earth"):
        assert sum(v for k, v in normalized.items() if k[0] == kind) / 3 == pytest.approx(1.0)
    # A kind with big raw numbers does not win by size: the best earth layer goes first.
    assert select_top(normalized, 1) == [("earth", 2)]
    assert select_top(raw, 1) == [("lora", 2)]


def test_select_top_orders_by_layer_and_breaks_ties_deterministically() -> None:
    scores = {("earth", 0): 1.0, ("lora", 3): 1.0, ("adapter", 3): 1.0, ("lora", 1): 5.0, ("adapter", 2): 0.5}
    assert select_top(scores, 2) == [("earth", 0), ("lora", 1)]  # tie at 1.0: the lower layer wins
    assert select_top(scores, 3) == [("earth", 0), ("lora", 1), ("lora", 3)]  # same layer: kind order
    assert select_top(scores, 10) == [("earth", 0), ("lora", 1), ("adapter", 2), ("lora", 3), ("adapter", 3)]


# -- --select ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,candidates,expected",
    [
        ("6", 18, 6),
        (6, 18, 6),
        ("18", 18, 18),
        ("1", 18, 1),
        (1, 18, 1),
        ("0.25", 18, 5),
        (0.5, 18, 9),
        ("0.01", 18, 1),
        ("1.0", 18, 18),
        (1.0, 18, 18),
        ("1e-9", 4, 1),
    ],
)
def test_parse_select_reads_counts_and_fractions(text: str | float, candidates: int, expected: int) -> None:
    assert parse_select(text, candidates) == expected


@pytest.mark.parametrize(
    "text,message",
    [
        ("six", "give a count"),
        ("", "give a count"),
        (None, "give a count"),
        ("0", "positive"),
        ("-2", "positive"),
        ("nan", "positive"),
        ("inf", "positive"),
        ("2.5", "whole number"),
        ("19", "only 18 candidate"),
    ],
)
def test_parse_select_rejects_unusable_values(text: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_select(text, 18)  # type: ignore[arg-type]


# -- what run.json keeps ------------------------------------------------------------------------------


def test_selection_round_trips_through_json() -> None:
    raw = {("lora", 0): 2.0, ("earth", 0): 0.5, ("lora", 1): 4.0, ("earth", 1): 1.5}
    scores = FisherScores(raw, normalize_within_kind(raw), 8)
    selection = Selection(step=40, selected=[("lora", 1), ("earth", 1)], scores=scores, seconds=1.23456)
    data = json.loads(json.dumps(selection.to_dict()))
    assert [(s["kind"], s["layer"]) for s in data["scores"]] == [("lora", 0), ("earth", 0), ("lora", 1), ("earth", 1)]
    again = Selection.from_dict(data)
    assert again.step == 40 and again.selected == selection.selected and again.rule == "fisher"
    assert again.scores.raw == raw and again.scores.samples == 8
    assert again.scores.normalized == pytest.approx(selection.scores.normalized)
    assert math.isclose(again.seconds, 1.235)


def test_the_papers_sum_normalisation_selects_the_same_modules() -> None:
    """The paper divides each score by its kind's sum over layers; cegate divides by the mean. Every
    kind has one module per block, so the two differ by the same factor (the depth) for every kind and
    every top-k is the same: the variant needs no rule of its own (issue 12, item 2)."""
    generator = torch.Generator().manual_seed(0)
    kinds, depth = ("lora", "adapter", "earth"), 12
    for trial in range(50):
        scale = {kind: 10.0 ** int(torch.randint(-6, 6, (1,), generator=generator)) for kind in kinds}
        raw = {(kind, layer): scale[kind] * float(torch.rand((), generator=generator)) for kind in kinds for layer in range(depth)}
        by_mean = normalize_within_kind(raw)
        by_sum = {key: raw[key] / sum(v for k, v in raw.items() if k[0] == key[0]) for key in raw}
        for k in (1, 5, 9, 18, 36):
            assert select_top(by_sum, k) == select_top(by_mean, k), (trial, k)


def test_agreement_scores_the_squared_mean_gradient_and_favours_modules_samples_agree_on() -> None:
    """fisher-agree (issue 12, transfer-aware): per sample, d loss / d w_m = target * x_m in the toy,
    so the statistic is |mean over samples of target * x_m|^2. A module whose gradients flip sign from
    sample to sample has the larger Fisher but the smaller agreement score."""
    from cegate_cli.toolbox.fisher import score_statistic, select_by_fisher_rule

    model, toolbox, slices = toy()
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(12, generator=generator) * 0.1 for _ in range(4)]
    for i, x in enumerate(inputs):
        x[slices[("lora", 1)]] = 5.0 * (-1) ** i  # loud but contradictory: the signs cancel
        x[slices[("lora", 3)]] = 1.0  # quiet but every sample pulls the same way
    targets = [torch.tensor(1.0)] * 4
    fisher = empirical_fisher(model, toolbox, zip(inputs, targets), product_loss)
    agree = empirical_fisher(model, toolbox, zip(inputs, targets), product_loss, statistic="agreement")
    for key, part in slices.items():
        mean = sum(float(t) * x[part] for x, t in zip(inputs, targets)) / 4
        assert agree.raw[key] == pytest.approx(float(mean.square().sum()), rel=1e-5, abs=1e-9), key
    assert select_top(fisher.normalized, 1) == [("lora", 1)]
    assert select_by_fisher_rule("fisher-agree", agree.normalized, 1, 4) == [("lora", 3)]
    assert score_statistic("fisher-agree") == "agreement" and score_statistic("fisher-cost") == "fisher"
    with pytest.raises(ValueError, match="unknown score statistic"):
        empirical_fisher(model, toolbox, zip(inputs, targets), product_loss, statistic="variance")
