"""Segmentation heads over the backbone's multi-level features.

A ViT gives every level at the same coarse resolution (1/patch). The UNet-style head turns them
into a pyramid (deepest level coarsest), upsamples step by step fusing the shallower levels, and
adds a small full-resolution stem on the image itself so class boundaries are not limited to the
patch grid. `linear` is the light alternative: normalise, concatenate, 1x1 classify, upsample.
`linear-pixel` is `linear` plus a per-pixel path: a few convolutions on the image's bands at full
resolution whose class scores add to the upsampled ones, so a pixel's own spectrum and its
immediate edges reach the map, which the patch grid alone blurs (thin roads, field borders).
GroupNorm rather than BatchNorm: training batches are small and must behave the same on one
process and under DistributedDataParallel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cegate_cli.model.decoder_names import DECODERS

CLASS_BIAS = "classifier.bias"
"""Every head's class scores end in the 1x1 conv `classifier`: adding to its bias shifts a class's
score at every pixel (bilinear upsampling keeps a constant), which is how calibration offsets are
stored (run/weights.py `with_class_offsets`)."""


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(out_channels),
            nn.GELU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(out_channels),
            nn.GELU(),
        )


class UNetDecoder(nn.Module):
    """Channels halve at every upsampling step, so the full-resolution stages stay cheap."""

    def __init__(self, embed_dim: int, num_levels: int, in_chans: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        stage_widths = [max(16, width >> step) for step in range(num_levels)]  # deepest level first
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(embed_dim, channels, 1, bias=False), _norm(channels), nn.GELU())
            for channels in reversed(stage_widths)  # features come shallow -> deep
        )
        self.fuse = nn.ModuleList(ConvBlock(stage_widths[step - 1] + stage_widths[step], stage_widths[step]) for step in range(1, num_levels))
        stem_width = 16
        self.stem = ConvBlock(in_chans, stem_width)
        self.final = ConvBlock(stage_widths[-1] + stem_width, stage_widths[-1])
        self.classifier = nn.Conv2d(stage_widths[-1], num_classes, 1)

    def forward(self, features: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        levels = [project(feature) for project, feature in zip(self.project, features)]
        x = levels[-1]
        for fuse, skip in zip(self.fuse, reversed(levels[:-1])):
            target = (min(x.shape[-2] * 2, images.shape[-2]), min(x.shape[-1] * 2, images.shape[-1]))
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
            skip = F.interpolate(skip, size=target, mode="bilinear", align_corners=False)
            x = fuse(torch.cat((x, skip), dim=1))
        x = F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)
        x = self.final(torch.cat((x, self.stem(images)), dim=1))
        return self.classifier(x)


class LinearDecoder(nn.Module):
    def __init__(self, embed_dim: int, num_levels: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, embed_dim * num_levels)
        self.classifier = nn.Conv2d(embed_dim * num_levels, num_classes, 1)

    def forward(self, features: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.norm(torch.cat(features, dim=1)))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


class LinearPixelDecoder(LinearDecoder):
    """The linear head plus class scores from each pixel's bands and its 3x3 neighbourhood.

    The pixel path's last layer starts at zero, so at initialisation this head is the linear head
    exactly and the per-pixel evidence is learnt as a correction to the feature scores.
    """

    def __init__(self, embed_dim: int, num_levels: int, in_chans: int, num_classes: int, width: int = 16) -> None:
        super().__init__(embed_dim, num_levels, num_classes)
        self.pixel = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 1),
            nn.GELU(),
            nn.Conv2d(width, num_classes, 1),
        )
        nn.init.zeros_(self.pixel[-1].weight)
        nn.init.zeros_(self.pixel[-1].bias)

    def forward(self, features: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        return super().forward(features, images) + self.pixel(images)


def build_decoder(name: str, embed_dim: int, num_levels: int, in_chans: int, num_classes: int) -> nn.Module:
    if name == "unet":
        return UNetDecoder(embed_dim, num_levels, in_chans, num_classes)
    if name == "linear":
        return LinearDecoder(embed_dim, num_levels, num_classes)
    if name == "linear-pixel":
        return LinearPixelDecoder(embed_dim, num_levels, in_chans, num_classes)
    from cegate_cli.errors import InputError

    raise InputError(f"unknown decoder {name!r}; choose from {', '.join(DECODERS)}")
