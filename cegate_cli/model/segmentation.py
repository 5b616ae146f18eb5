"""The segmentation model: backbone (with its toolbox) + head, one forward path.

`build_model` is the single place that assembles a model from a backbone, a band choice, a
toolbox config and a class count, so `adapt`, `predict` and the benchmarks build identical ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cegate_cli.backbone.band_adapt import BandMapping
from cegate_cli.backbone.base import BlockBackbone
from cegate_cli.backbone.family import Pretrained
from cegate_cli.data.stats import BandStats
from cegate_cli.model.decoder import build_decoder
from cegate_cli.toolbox import Toolbox, ToolboxConfig, attach_toolbox


class SegmentationModel(nn.Module):
    """images (B, C, H, W), normalised -> logits (B, K, H, W)."""

    def __init__(self, backbone: BlockBackbone, decoder: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.backbone(images), images)

    def patch_embed_state(self) -> dict[str, torch.Tensor]:
        """Embedding weights fitted to the run's bands (see `BlockBackbone.band_embedding_state`)."""
        return self.backbone.band_embedding_state()


@dataclass
class BuiltModel:
    model: SegmentationModel
    toolbox: Toolbox
    band_mapping: BandMapping


def build_model(
    pretrained: Pretrained,
    bands: Sequence[str],
    num_classes: int,
    toolbox_config: ToolboxConfig,
    decoder: str = "unet",
    seed: int = 0,
    *,
    normalization: BandStats | None = None,
    inputs: Any = None,
) -> BuiltModel:
    """Fit the backbone to the bands, attach the toolbox, add a head initialised from `seed`.

    The family builds its backbone (`Pretrained.build`) from the run's band statistics (Galileo
    computes NDVI from raw values) and the run's inputs (`inputs`, the family's: Galileo's patch
    size, pixel size, month, normalisation; None for families that take none).
    """
    backbone, mapping = pretrained.build(bands, normalization, inputs)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        toolbox = attach_toolbox(backbone, toolbox_config)
        head = build_decoder(decoder, backbone.embed_dim, len(backbone.feature_layers), backbone.in_chans, num_classes)
    finally:
        torch.random.set_rng_state(generator_state)
    return BuiltModel(SegmentationModel(backbone, head), toolbox, mapping)
