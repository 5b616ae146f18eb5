"""DACS ClassMix: paste half the classes of a source crop onto a target crop.

The mixed crop has true source labels on the pasted pixels and the teacher's pseudo-labels on
the rest, so the student sees source objects in target surroundings (and target context around
them), which is what moves it towards the target domain while keeping the classes anchored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def classmix_masks(labels: torch.Tensor, ignore_index: int, rng: np.random.Generator) -> torch.Tensor:
    """(B, H, W) source labels -> (B, H, W) bool: pixels of a random half of each crop's classes.

    Half is rounded up (DACS), so a crop with one class pastes it; ignored pixels are never pasted.
    """
    masks = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    for i in range(labels.shape[0]):
        present = torch.unique(labels[i])
        present = present[present != ignore_index]
        if present.numel() == 0:
            continue
        count = (present.numel() + 1) // 2
        chosen = present[torch.from_numpy(rng.choice(present.numel(), size=count, replace=False)).to(present.device)]
        masks[i] = torch.isin(labels[i], chosen)
    return masks


@dataclass
class MixedBatch:
    images: torch.Tensor
    """(B, C, H, W): source pixels where pasted, target pixels elsewhere."""
    labels: torch.Tensor
    """(B, H, W): source labels where pasted, pseudo-labels elsewhere, ignore where target is invalid."""
    pixel_weight: torch.Tensor
    """(B, H, W): 1 on pasted source pixels, the target's pixel weight elsewhere."""
    valid: torch.Tensor


def mix(
    source_images: torch.Tensor,
    source_labels: torch.Tensor,
    target_images: torch.Tensor,
    pseudo_labels: torch.Tensor,
    pseudo_weight: torch.Tensor,
    target_valid: torch.Tensor,
    paste: torch.Tensor,
) -> MixedBatch:
    """Combine a source and a target batch under `paste` masks (see `classmix_masks`).

    `pseudo_weight` is per target pixel (B, H, W), e.g. the confidence mask, or per crop (B,).
    """
    m = paste.unsqueeze(1)
    images = torch.where(m, source_images, target_images)
    labels = torch.where(paste, source_labels, pseudo_labels)
    if pseudo_weight.ndim == 1:
        pseudo_weight = pseudo_weight[:, None, None].expand(paste.shape)
    weight = torch.where(paste, 1.0, pseudo_weight.float())
    return MixedBatch(images, labels, weight, paste | target_valid)
