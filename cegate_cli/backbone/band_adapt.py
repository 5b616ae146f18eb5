"""Fit a pretrained patch embedding to the user's bands.

Imagery has any number of bands in any order; a pretrained ViT expects the channels it was
trained on. Kernels are copied by band name where the names match (so RGB stays RGB), and every
other band starts from the mean of the pretrained kernels, scaled by (pretrained bands / chosen
bands). For a scene where no name matches, that keeps the response to a uniform image equal to
the original's, so the first block sees activations of the scale it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BandMapping:
    """For each chosen band, the pretrained channel it copies, or None when it starts from the mean."""

    target_bands: tuple[str, ...]
    source_channel: tuple[int | None, ...]

    @property
    def matched(self) -> int:
        return sum(index is not None for index in self.source_channel)


def map_bands(pretrained_bands: Sequence[str] | None, pretrained_channels: int, target_bands: Sequence[str]) -> BandMapping:
    """Decide, per target band, which pretrained channel (if any) to copy."""
    if pretrained_bands is None:
        same_count = len(target_bands) == pretrained_channels
        return BandMapping(tuple(target_bands), tuple(i if same_count else None for i in range(len(target_bands))))
    lookup = {name: index for index, name in enumerate(pretrained_bands)}
    return BandMapping(tuple(target_bands), tuple(lookup.get(name) for name in target_bands))


@torch.no_grad()
def adapt_patch_embed(proj: nn.Conv2d, mapping: BandMapping) -> nn.Conv2d:
    """A new Conv2d whose input channels follow `mapping`; bias and output channels are unchanged."""
    weight = proj.weight  # (D, C_pretrained, p, p)
    pretrained_channels = weight.shape[1]
    mean_kernel = weight.mean(dim=1) * (pretrained_channels / len(mapping.target_bands))
    columns = [weight[:, index] if index is not None else mean_kernel for index in mapping.source_channel]
    adapted = nn.Conv2d(
        len(columns),
        proj.out_channels,
        kernel_size=proj.kernel_size,
        stride=proj.stride,
        padding=proj.padding,
        bias=proj.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    adapted.weight.copy_(torch.stack(columns, dim=1))
    if proj.bias is not None:
        adapted.bias.copy_(proj.bias)
    return adapted


def adapt_vit_bands(vit: nn.Module, pretrained_bands: Sequence[str] | None, target_bands: Sequence[str]) -> BandMapping:
    """Replace `vit.patch_embed.proj` in place; return the mapping so it can be reported."""
    proj: nn.Conv2d = vit.patch_embed.proj  # type: ignore[assignment]
    mapping = map_bands(pretrained_bands, proj.in_channels, target_bands)
    identity = mapping.source_channel == tuple(range(proj.in_channels))
    if not identity:
        vit.patch_embed.proj = adapt_patch_embed(proj, mapping)
    return mapping
