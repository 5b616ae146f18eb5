"""The segmentation model: backbone (with its toolbox) + head, one forward path.

`build_model` is the single place that assembles a model from a backbone, a band choice, a
toolbox config and a class count, so `adapt`, `predict` and the benchmarks build identical ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cegate_cli.backbone.band_adapt import BandMapping, adapt_vit_bands
from cegate_cli.backbone.pretrained import PretrainedViT
from cegate_cli.backbone.base import BlockBackbone
from cegate_cli.backbone.vit import Backbone
from cegate_cli.decoder import build_decoder
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
    pretrained: PretrainedViT,
    bands: Sequence[str],
    num_classes: int,
    toolbox_config: ToolboxConfig,
    decoder: str = "unet",
    seed: int = 0,
) -> BuiltModel:
    """Adapt bands, attach the toolbox, add a head initialised from `seed` (reproducible runs)."""
    mapping = adapt_vit_bands(pretrained.vit, pretrained.band_names, bands)
    backbone = Backbone(pretrained.vit)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        toolbox = attach_toolbox(backbone, toolbox_config)
        head = build_decoder(decoder, backbone.embed_dim, len(backbone.feature_layers), backbone.in_chans, num_classes)
    finally:
        torch.random.set_rng_state(generator_state)
    return BuiltModel(SegmentationModel(backbone, head), toolbox, mapping)
