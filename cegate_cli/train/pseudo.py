"""Pseudo-labels from the teacher: which target pixels count, how much, and what they say.

Nodata, masked and padded pixels never count: their label is the ignore index and they are
left out of every share, so a scene with a wide nodata collar does not look unconfident.
"""

from __future__ import annotations

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
def pseudo_label(logits: torch.Tensor, valid: torch.Tensor, threshold: float, ignore_index: int) -> PseudoLabels:
    """Teacher logits (B, K, H, W) + valid (B, H, W) -> labels, confidence mask and per-crop weight."""
    probabilities = torch.softmax(logits.float(), dim=1)
    confidence, labels = probabilities.max(dim=1)
    valid = valid.to(labels.device).bool()
    confident = (confidence > threshold) & valid
    counts = valid.flatten(1).sum(dim=1)
    weight = confident.flatten(1).sum(dim=1).float() / counts.clamp(min=1).float()
    return PseudoLabels(labels.masked_fill(~valid, ignore_index), confident, weight, valid)


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
