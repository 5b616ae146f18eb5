"""Pseudo-labels from the teacher: which target pixels count, how much, and what they say.

A pixel is confident when the teacher's probability exceeds the threshold (DACS: 0.968). A
fixed threshold assumes a calibrated teacher; a small or briefly trained one can be right on
most target pixels while hardly any pass 0.968 (docs/adaptation.md has the demo's figures), so
self-training learns nothing, or learns only the one or two classes the teacher is surest of
and forgets the rest. With `class_balance` p > 0 the threshold of each
class is lowered to the confidence of its most confident p share of pixels in the batch
(class-balanced self-training, Zou et al. 2018): ranks instead of calibrated values, and every
predicted class keeps pseudo-labels. A floor halfway between chance (1/K) and certainty keeps
an untrained teacher's near-chance guesses out, so the pseudo-label weight still starts near 0.

A teacher trained on an imbalanced source drifts toward its majority classes on a shifted target,
and self-training on its own labels feeds that drift until the rare classes vanish (on real
imagery, buildings all but did). With a `prior` (the source labels' class
shares), the teacher's probabilities are aligned to it before labels are taken (distribution
alignment, Berthelot et al. 2020): each class's probability is multiplied by prior / (the
batch's mean predicted share of that class) and renormalised, so a class the teacher
under-predicts relative to the source is lifted and an over-predicted one is damped.

Nodata, masked and padded pixels never count: their label is the ignore index and they are
left out of every share, so a scene with a wide nodata collar does not look unconfident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class PseudoLabels:
    labels: torch.Tensor
    """(B, H, W) int64: the teacher's class on valid pixels, the ignore index elsewhere."""
    confident: torch.Tensor
    """(B, H, W) bool: valid and teacher probability above the threshold."""
    weight: torch.Tensor
    """(B,) float: share of each crop's valid pixels that are confident (DACS's pseudo-label weight)."""
    valid: torch.Tensor
    """(B, H, W) bool."""

    def confident_only(self, ignore_index: int) -> torch.Tensor:
        """Labels with unconfident pixels set to the ignore index (Fisher scoring, hard masking)."""
        return self.labels.masked_fill(~self.confident, ignore_index)


@torch.no_grad()
def pseudo_label(
    logits: torch.Tensor,
    valid: torch.Tensor,
    threshold: float,
    ignore_index: int,
    class_balance: float = 0.0,
    prior: torch.Tensor | None = None,
) -> PseudoLabels:
    """Teacher logits (B, K, H, W) + valid (B, H, W) -> labels, confidence mask and per-crop weight."""
    probabilities = torch.softmax(logits.float(), dim=1)
    valid = valid.to(probabilities.device).bool()
    if prior is not None:
        probabilities = align_to_prior(probabilities, valid, prior)
    confidence, labels = probabilities.max(dim=1)
    thresholds = class_thresholds(confidence, labels, valid, logits.shape[1], threshold, class_balance)
    confident = (confidence > thresholds[labels]) & valid
    counts = valid.flatten(1).sum(dim=1)
    weight = confident.flatten(1).sum(dim=1).float() / counts.clamp(min=1).float()
    return PseudoLabels(labels.masked_fill(~valid, ignore_index), confident, weight, valid)


def align_to_prior(probabilities: torch.Tensor, valid: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Probabilities (B, K, H, W) reweighted per class by prior / (mean predicted share over the
    valid pixels of the batch), renormalised; unchanged when no pixel is valid."""
    if not bool(valid.any()):
        return probabilities
    predicted = probabilities.permute(0, 2, 3, 1)[valid].mean(dim=0).clamp(min=1e-6)
    ratio = prior.to(probabilities.device, probabilities.dtype) / predicted
    aligned = probabilities * ratio.view(1, -1, 1, 1)
    return aligned / aligned.sum(dim=1, keepdim=True).clamp(min=1e-12)


def prior_distance(shares: list[float], prior: torch.Tensor) -> float:
    """Total variation distance between pseudo-label class shares and the source prior (0 to 1)."""
    return 0.5 * float(sum(abs(float(s) - float(p)) for s, p in zip(shares, prior.tolist())))


def class_thresholds(
    confidence: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, num_classes: int, threshold: float, class_balance: float
) -> torch.Tensor:
    """(K,) thresholds: `threshold`, lowered per class to the (1 - class_balance) quantile of the
    confidences of its valid pixels, never below the floor (1 + 1/K) / 2."""
    thresholds = torch.full((num_classes,), float(threshold), device=confidence.device)
    if class_balance <= 0:
        return thresholds
    floor = min(float(threshold), 0.5 * (1.0 + 1.0 / num_classes))
    for c in range(num_classes):
        values = confidence[valid & (labels == c)]
        if values.numel() == 0:
            continue
        top = max(1, math.ceil(class_balance * values.numel()))
        lowest_top = float(values.flatten().kthvalue(values.numel() - top + 1).values)
        # A pixel counts when strictly above its threshold: nudge down so the `top` pixels count.
        thresholds[c] = max(floor, min(float(threshold), lowest_top - 1e-6))
    return thresholds


def pseudo_label_stats(step: int, pseudo: PseudoLabels, num_classes: int) -> dict[str, Any]:
    """What run.json records: share of confident pixels, mean weight, class shares (of valid and
    of confident pixels). A class share drifting to 1 warns of a collapse onto one class."""
    valid = pseudo.valid
    total = int(valid.sum())
    confident = int(pseudo.confident.sum())
    labels = pseudo.labels[valid]
    sure = pseudo.labels[pseudo.confident]
    all_counts = torch.bincount(labels.flatten().cpu(), minlength=num_classes)[:num_classes]
    sure_counts = torch.bincount(sure.flatten().cpu(), minlength=num_classes)[:num_classes]
    return {
        "step": step,
        "confident_share": confident / total if total else 0.0,
        "mean_weight": float(pseudo.weight.mean()) if pseudo.weight.numel() else 0.0,
        "class_share": [round(float(c) / total, 4) if total else 0.0 for c in all_counts],
        "confident_class_share": [round(float(c) / confident, 4) if confident else 0.0 for c in sure_counts],
    }


DRIFT_WINDOW = 5
"""Records pooled on each side of the drift comparison: one record is one batch of crops, whose
class mix is the crops' ground (a crop in the sea is all water), not the teacher's drift."""


def pooled_drift(history: list[list[float]], window: int = DRIFT_WINDOW) -> float | None:
    """Total variation between the mean class shares of the first `window` records and of the last
    `window`; None while the two windows would overlap."""
    if len(history) < 2 * window:
        return None
    count = len(history[0])
    first = [sum(record[c] for record in history[:window]) / window for c in range(count)]
    last = [sum(record[c] for record in history[-window:]) / window for c in range(count)]
    return 0.5 * sum(abs(a - b) for a, b in zip(first, last))
