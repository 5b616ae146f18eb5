"""Fisher-guided selection: which toolbox modules carry the task's gradient.

Score of module m: the empirical Fisher information, the mean over M samples of the squared
gradient of the task loss, summed over m's parameters (those its kind names for scoring,
toolbox/kinds.py: all of them for the built-in kinds). Kinds differ in size (a LoRA holds more
parameters than an Earth-Adapter router), so scores are normalised within each kind across
the scored layers (divided by the kind's mean, so 1.0 is "an average scored layer for this
kind") before the top k of the (kind, layer) pairs are taken. Only the modules a rule may pick
are scored (`modules_to_score`): fisher-cost never scores the blocks below its cost cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cegate_cli.errors import InputError
from cegate_cli.toolbox.attach import Toolbox
from cegate_cli.toolbox.module_key import ModuleKey, in_order, keys_from_json, keys_to_json
from cegate_cli.toolbox.select_spec import parse_select_spec

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FisherScores:
    raw: dict[ModuleKey, float]
    normalized: dict[ModuleKey, float]
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "scores": [{**key.to_json(), "raw": self.raw[key], "normalized": self.normalized[key]} for key in in_order(self.raw)],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FisherScores:
        raw = {ModuleKey.from_json(s): float(s["raw"]) for s in data["scores"]}
        normalized = {ModuleKey.from_json(s): float(s["normalized"]) for s in data["scores"]}
        return cls(raw, normalized, int(data["samples"]))


@dataclass
class Selection:
    """One selection event: when, what was chosen, and the scores behind it."""

    step: int
    selected: list[ModuleKey]
    scores: FisherScores
    seconds: float = 0.0
    rule: str = "fisher"
    unscored: list[ModuleKey] = field(default_factory=list)
    """Candidates left unscored because the rule could not pick them (fisher-cost: those below
    its cost cut), so readers show them as not scored rather than as a score of 0. Empty where
    every candidate was scored, and then absent from the JSON, as in runs written before."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "rule": self.rule,
            "seconds": round(self.seconds, 3),
            "selected": keys_to_json(self.selected),
            **({"unscored": keys_to_json(self.unscored)} if self.unscored else {}),
            **self.scores.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        return cls(
            step=int(data["step"]),
            selected=keys_from_json(data["selected"]),
            scores=FisherScores.from_dict(data),
            seconds=float(data.get("seconds", 0.0)),
            rule=str(data.get("rule", "fisher")),
            unscored=keys_from_json(data.get("unscored", [])),
        )


def empirical_fisher(
    model: nn.Module,
    toolbox: Toolbox,
    samples: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn,
    keys: Sequence[ModuleKey] | None = None,
    statistic: str = "fisher",
) -> FisherScores:
    """Per-sample squared gradients of `loss_fn(model(image), target)`, averaged, per module.

    Every scored module is switched on for the measurement (a module at its identity
    initialisation changes nothing, so this measures the model being trained) and the previous
    active set is restored afterwards. Samples are single images with their targets.

    `statistic="agreement"` scores the squared mean gradient instead, from the same per-sample
    gradients: the Fisher minus the gradients' variance over samples, large only where the samples
    pull a module the same way. Scored on source crops and target pseudo-labels together (as
    self-training does), it favours modules whose source and target gradients agree.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown score statistic {statistic!r}; choose {', '.join(STATISTICS)}")
    keys = list(keys) if keys is not None else toolbox.keys()
    previously_active = toolbox.active_keys
    previous_grad_from = toolbox.backbone.grad_from_layer
    was_training = model.training
    toolbox.set_active(keys)
    toolbox.backbone.grad_from_layer = min(layer for _, layer in keys)
    parameters = {key: toolbox.scored_parameters(key) for key in keys}
    flat = [p for key in keys for p in parameters[key]]
    totals = {key: 0.0 for key in keys}
    sums: dict[ModuleKey, list[torch.Tensor | None]] = {key: [None] * len(parameters[key]) for key in keys}
    count = 0
    model.eval()  # no dropout noise in the measurement; the heads use GroupNorm, so no batch statistics
    try:
        for image, target in samples:
            loss = loss_fn(model(image.unsqueeze(0)), target.unsqueeze(0))
            if not torch.isfinite(loss) or loss.detach() == 0:
                continue  # a crop with no usable label carries no information
            gradients = torch.autograd.grad(loss, flat, allow_unused=True)
            offset = 0
            for key in keys:
                n = len(parameters[key])
                own = gradients[offset : offset + n]
                if statistic == "agreement":  # summed per parameter; squared once, after the last sample
                    for i, g in enumerate(own):
                        if g is not None:
                            previous = sums[key][i]
                            sums[key][i] = g.detach().float() if previous is None else previous + g.detach().float()
                else:
                    totals[key] += float(sum(g.detach().float().pow(2).sum() for g in own if g is not None))
                offset += n
            count += 1
    finally:
        toolbox.set_active(previously_active)
        toolbox.backbone.grad_from_layer = previous_grad_from
        model.train(was_training)
    if count == 0:
        raise InputError("no training crop had a usable label to score modules on; check the masks and nodata")
    if statistic == "agreement":
        raw = {key: float(sum((g / count).pow(2).sum() for g in sums[key] if g is not None)) for key in keys}
    else:
        raw = {key: value / count for key, value in totals.items()}
    return FisherScores(raw=raw, normalized=normalize_within_kind(raw), samples=count)


def normalize_within_kind(raw: dict[ModuleKey, float]) -> dict[ModuleKey, float]:
    """Divide each score by its kind's mean over the layers in `raw` (the scored ones only, so a
    rule that scores fewer blocks normalises among those); a kind with all zeros stays zero."""
    normalized = {}
    for kind in {key[0] for key in raw}:
        keys = [key for key in raw if key[0] == kind]
        mean = sum(raw[key] for key in keys) / len(keys)
        for key in keys:
            normalized[key] = raw[key] / mean if mean > 0 else 0.0
    return normalized


def select_top(scores: dict[ModuleKey, float], k: int) -> list[ModuleKey]:
    """The k highest scores; ties go to the lower layer, then kind order (deterministic)."""
    ranked = sorted(in_order(scores), key=lambda key: -scores[key])  # stable: ties keep block, then kind order
    return in_order(ranked[:k])


FISHER_RULES = ("fisher", "fisher-cost", "fisher-block", "fisher-agree")
"""Rules that score modules by Fisher information (the others are baselines without scores)."""
HEAD_WARMUP = "head-warmup"
"""The rule recorded for the selection of no module while the head trains alone (TrainConfig.head_warmup)."""
SOURCE_MODEL = "source-model"
"""The rule recorded when a source-first run returns to the modules of its source phase's best step."""
STATISTICS = ("fisher", "agreement")
"""What `empirical_fisher` measures: the mean squared gradient, or the squared mean gradient."""


def score_statistic(rule: str) -> str:
    """The statistic a Fisher rule ranks by: "fisher-agree" the squared mean gradient, the others the Fisher."""
    return "agreement" if rule == "fisher-agree" else "fisher"


COST_BUDGET = 0.5
"""fisher-cost: the share of the blocks whose backward pass the selection may need."""
COST_BUDGET_RULES = ("fisher-cost", "random-cost")
"""The rules that pick only among `within_cost_budget`'s modules: by score, and at random (its control)."""


def within_cost_budget(keys: list[ModuleKey], k: int, depth: int) -> list[ModuleKey]:
    """The modules fisher-cost (and its random control, random-cost) may pick: those in blocks at or
    above the cut that keeps the backward pass within COST_BUDGET of the blocks, the cut lowered just
    enough when fewer than k modules lie above it. Applied to its own result (with the same k and
    depth) it returns that result again, so fisher-cost may score only these modules and still
    pick among the same ones."""
    cut = depth - max(1, math.floor(depth * COST_BUDGET))
    allowed = [key for key in keys if key[1] >= cut]
    if len(allowed) < k:
        for layer in sorted({key[1] for key in keys}, reverse=True):
            allowed = [key for key in keys if key[1] >= layer]
            if len(allowed) >= k:
                break
    return allowed


def modules_to_score(rule: str, candidates: list[ModuleKey], k: int, depth: int) -> list[ModuleKey]:
    """The candidates a Fisher rule needs scores for: the ones it may pick.

    fisher-cost may pick only `within_cost_budget`'s modules, so only those are scored: scoring
    switches every scored module on and carries autograd down to the lowest of them, so scoring
    the blocks below the cut would cost the backward pass (time, and the process's memory peak)
    the rule exists to save, for scores it cannot use. The other rules rank every candidate.
    """
    if rule == "fisher-cost":
        return within_cost_budget(list(candidates), k, depth)
    return list(candidates)


def select_by_fisher_rule(rule: str, scores: dict[ModuleKey, float], k: int, depth: int) -> list[ModuleKey]:
    """The k modules a Fisher rule picks from per-kind normalised scores.

    - "fisher": the global top k (the paper's rule).
    - "fisher-cost": the top k among blocks at or above the cut that keeps the backward pass within
      COST_BUDGET of the blocks. A module in block l needs autograd through blocks l..L-1, and
      gradient magnitudes grow toward the input, so the plain rule picks blocks 0-2 and pays for
      the whole backward pass; this rule buys the no-autograd saving for the lower blocks. Given
      scores of every candidate it keeps those within the budget; given only those
      (`modules_to_score`, what training scores) it ranks them all.
    - "fisher-block": scores divided by their block's total before the top k, so every block
      competes on which of its modules matters, not on how large its gradients are (depth bias).
    - "fisher-agree": the global top k of scores measured as the squared mean gradient
      (`score_statistic`): modules the samples agree on, not those with the noisiest gradients.
    """
    if rule in ("fisher", "fisher-agree"):
        return select_top(scores, k)
    if rule == "fisher-cost":
        allowed = within_cost_budget(list(scores), k, depth)
        return select_top({key: scores[key] for key in allowed}, k)
    if rule == "fisher-block":
        totals: dict[int, float] = {}
        for (_kind, layer), value in scores.items():
            totals[layer] = totals.get(layer, 0.0) + value
        relative = {key: (value / totals[key[1]] if totals[key[1]] > 0 else 0.0) for key, value in scores.items()}
        return select_top(relative, k)
    raise InputError(f"unknown Fisher selection rule {rule!r}; choose {', '.join(FISHER_RULES)}")


def parse_select(text: str | int | float, candidates: int) -> int:
    """`--select 6` (a count) or `--select 0.25` (a fraction of the candidates) -> a count >= 1.

    See `parse_select_spec` for which spellings mean which.
    """
    kind, value = parse_select_spec(text)
    count = math.ceil(value * candidates) if kind == "fraction" else int(value)
    if count > candidates:
        raise InputError(f"--select {text}: only {candidates} candidate modules exist")
    return max(1, count)
