"""Segmentation losses that never count ignored or nodata pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over labeled pixels; 0 (with a graph) when nothing is labeled.

    `pixel_weight` (same shape as target) scales each pixel's loss, e.g. the pseudo-label
    confidence weight in self-training.
    """
    labeled = target != ignore_index
    if not bool(labeled.any()):
        return logits.sum() * 0.0
    losses = F.cross_entropy(logits.float(), target.masked_fill(~labeled, 0), reduction="none")
    weights = labeled.float() if pixel_weight is None else pixel_weight.float() * labeled.float()
    return (losses * weights).sum() / labeled.float().sum()
