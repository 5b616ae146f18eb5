"""Whether an adapted model replaces the source model, judged without target labels.

Self-training can make a target map worse (a teacher's errors feed themselves, a class vanishes
from the map), and the target has no labels to show it. What can be seen: how each model divides
the target's pixels among the classes, how much the two maps agree, and how the adapted model
still does on the source's own validation images. A source-first run (train/selftrain.py) keeps
the source model when any of these says the adaptation went wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

VANISH_SHARE = 0.02
"""A class the source model gives at least this share of the target's pixels is watched..."""
VANISH_RATIO = 0.5
"""...and counts as vanished when the adapted model gives it less than this part of that share."""
SOURCE_DROP = 0.005
"""Source validation mIoU may fall by at most this much (the adapted model forgot the source):
adaptation that helped the target held the source's validation, and the runs it harmed had let it
fall, by less than 0.02 on some (docs/benchmarks-real.md, "The guard's threshold")."""

TARGET_NORM_MARGIN = 0.05
"""`--target-norm auto` reads the target with its own band statistics only when they raise the
source model's mean confidence on the target's pixels by at least this much. A sensor shift did
(+0.075 on the NAIP shift); another region's class mix moved the target's statistics and the
confidence by less, either way (-0.075 to +0.012 on the Dubai pair), and there the source's
statistics made the better maps (docs/benchmarks-real.md)."""


def choose_normalization(source_confidence: float, target_confidence: float) -> str:
    """ "target" or "source": the statistics `--target-norm auto` reads the target with."""
    return "target" if target_confidence >= source_confidence + TARGET_NORM_MARGIN else "source"


@dataclass(frozen=True)
class GuardVerdict:
    kept: str
    """"adapted" or "source"."""
    reasons: tuple[str, ...]
    """Why the source model was kept (empty when the adapted one was)."""
    source_shares: tuple[float, ...]
    adapted_shares: tuple[float, ...]
    """Class shares of the target pixels, as each model maps them."""
    agreement: float
    """Share of target pixels both models give the same class."""
    source_val_miou: float | None
    adapted_val_miou: float | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        data["source_shares"] = [round(s, 4) for s in self.source_shares]
        data["adapted_shares"] = [round(s, 4) for s in self.adapted_shares]
        data["agreement"] = round(self.agreement, 4)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuardVerdict:
        return cls(
            str(data["kept"]),
            tuple(str(r) for r in data.get("reasons", ())),
            tuple(float(s) for s in data["source_shares"]),
            tuple(float(s) for s in data["adapted_shares"]),
            float(data["agreement"]),
            None if data.get("source_val_miou") is None else float(data["source_val_miou"]),
            None if data.get("adapted_val_miou") is None else float(data["adapted_val_miou"]),
        )

    def sentence(self) -> str:
        """One line for the log, inspect and the report."""
        if self.kept == "adapted" and self.reasons:
            return f"kept the adapted model as asked (--no-guard), although {'; '.join(self.reasons)}"
        if self.kept == "adapted":
            return f"kept the adapted model (the two maps agree on {self.agreement:.0%} of the target's pixels)"
        return f"kept the source model: {'; '.join(self.reasons)} (the adapted model's weights stay in adapter_last.safetensors)"


def class_shares(predictions: torch.Tensor, valid: torch.Tensor, num_classes: int) -> tuple[float, ...]:
    """Share of the valid pixels given each class."""
    counts = torch.bincount(predictions[valid].flatten().cpu(), minlength=num_classes)[:num_classes].double()
    total = float(counts.sum())
    return tuple(float(c) / total if total else 0.0 for c in counts)


def judge(
    source_shares: tuple[float, ...],
    adapted_shares: tuple[float, ...],
    agreement: float,
    source_val_miou: float | None,
    adapted_val_miou: float | None,
    class_names: list[str],
) -> GuardVerdict:
    """Keep the adapted model unless a class vanished from its target map or it forgot the source."""
    reasons = []
    for name, before, after in zip(class_names, source_shares, adapted_shares):
        if before >= VANISH_SHARE and after < VANISH_RATIO * before:
            reasons.append(f"{name} fell from {before:.0%} to {after:.0%} of the target's pixels")
    if source_val_miou is not None and adapted_val_miou is not None and adapted_val_miou < source_val_miou - SOURCE_DROP:
        reasons.append(f"source validation mIoU fell from {source_val_miou:.3f} to {adapted_val_miou:.3f}")
    kept = "source" if reasons else "adapted"
    return GuardVerdict(kept, tuple(reasons), source_shares, adapted_shares, agreement, source_val_miou, adapted_val_miou)
