"""Segmentation losses that never count ignored or nodata pixels, and class weights for imbalance.

Real land-cover labels are imbalanced (NAIP: background 52% of pixels, water 1.4%), and mIoU
weighs every class alike, so plain cross-entropy spends the training on the majority classes.
`balanced_class_weights` softens that the usual way (inverse frequency, here its square root so a
class of 1% does not outweigh a class of 50% fifty-fold), and `soft_dice` adds a term that is
computed per class, so a rare class's overlap counts as much as a common one's.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def masked_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    pixel_weight: torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy over labeled pixels; 0 (with a graph) when nothing is labeled.

    `pixel_weight` (same shape as target) scales each pixel's loss, e.g. the pseudo-label
    confidence weight in self-training. `class_weight` (K,) weighs each pixel by its true class;
    the mean is then taken over those weights, as `F.cross_entropy(weight=...)` does.
    """
    labeled = target != ignore_index
    if not bool(labeled.any()):
        return logits.sum() * 0.0
    safe_target = target.masked_fill(~labeled, 0)
    losses = F.cross_entropy(logits.float(), safe_target, reduction="none")
    weights = labeled.float() if pixel_weight is None else pixel_weight.float() * labeled.float()
    if class_weight is None:
        return (losses * weights).sum() / labeled.float().sum()
    weights = weights * class_weight.to(logits.device, torch.float32)[safe_target]
    return (losses * weights).sum() / (class_weight.to(logits.device, torch.float32)[safe_target] * labeled.float()).sum()


def soft_dice(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, smooth: float = 1.0) -> torch.Tensor:
    """1 - mean over classes present in the batch (label or prediction) of the soft Dice overlap,
    over labeled pixels only."""
    labeled = target != ignore_index
    if not bool(labeled.any()):
        return logits.sum() * 0.0
    probabilities = logits.float().softmax(dim=1) * labeled.unsqueeze(1)
    onehot = F.one_hot(target.masked_fill(~labeled, 0), logits.shape[1]).permute(0, 3, 1, 2).float() * labeled.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (probabilities * onehot).sum(dims)
    total = probabilities.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * intersection + smooth) / (total + smooth)
    return 1 - dice[present].mean() if bool(present.any()) else logits.sum() * 0.0


def balanced_class_weights(label_counts: Mapping[int, int], num_classes: int, power: float = 0.5, cap: float = 10.0) -> torch.Tensor:
    """(K,) weights (median frequency / frequency) ** power, capped at `cap`, mean 1 over the
    classes that occur; a class with no labeled pixel gets weight 1 (it never occurs anyway)."""
    counts = torch.tensor([float(label_counts.get(c, 0)) for c in range(num_classes)])
    present = counts > 0
    if not bool(present.any()):
        return torch.ones(num_classes)
    frequency = counts / counts[present].sum()
    median = frequency[present].median()
    weights = torch.ones(num_classes)
    weights[present] = ((median / frequency[present]) ** power).clamp(max=cap)
    weights[present] /= weights[present].mean()
    return weights


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, kind: str, class_weight: torch.Tensor | None) -> torch.Tensor:
    """The task loss a run trains (and scores Fisher information) with; `kind` is one of
    `cegate_cli.options.train.LOSSES`."""
    if kind == "ce":
        return masked_cross_entropy(logits, target, ignore_index)
    loss = masked_cross_entropy(logits, target, ignore_index, class_weight=class_weight)
    if kind == "balanced+dice":
        loss = loss + soft_dice(logits, target, ignore_index)
    return loss
