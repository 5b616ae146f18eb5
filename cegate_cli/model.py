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
from cegate_cli.backbone.galileo_backbone import GALILEO_BAND_OF, GalileoBackbone, GalileoInputs
from cegate_cli.backbone.pretrained import Pretrained, PretrainedGalileo
from cegate_cli.backbone.base import BlockBackbone
from cegate_cli.backbone.vit import Backbone
from cegate_cli.data.stats import BandStats
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
    pretrained: Pretrained,
    bands: Sequence[str],
    num_classes: int,
    toolbox_config: ToolboxConfig,
    decoder: str = "unet",
    seed: int = 0,
    *,
    normalization: BandStats | None = None,
    galileo: GalileoInputs | None = None,
) -> BuiltModel:
    """Fit the backbone to the bands, attach the toolbox, add a head initialised from `seed`.

    Galileo also needs the run's band statistics (to compute NDVI from raw values) and how its
    inputs are fed (`galileo`: patch size, ground sample distance, month, normalisation).
    """
    backbone, mapping = make_backbone(pretrained, bands, normalization, galileo)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        toolbox = attach_toolbox(backbone, toolbox_config)
        head = build_decoder(decoder, backbone.embed_dim, len(backbone.feature_layers), backbone.in_chans, num_classes)
    finally:
        torch.random.set_rng_state(generator_state)
    return BuiltModel(SegmentationModel(backbone, head), toolbox, mapping)


def make_backbone(
    pretrained: Pretrained, bands: Sequence[str], normalization: BandStats | None = None, galileo: GalileoInputs | None = None
) -> tuple[BlockBackbone, BandMapping]:
    """The family's backbone for these bands, and which pretrained band each one takes."""
    if isinstance(pretrained, PretrainedGalileo):
        if normalization is None:
            raise ValueError("a Galileo backbone needs the run's band statistics")
        backbone = GalileoBackbone(pretrained.encoder, bands, normalization.mean, normalization.std, galileo or GalileoInputs())
        used = backbone.plan.channel_of
        mapping = BandMapping(
            tuple(bands),
            tuple(pretrained.band_names.index(GALILEO_BAND_OF[b]) if GALILEO_BAND_OF.get(b) in used else None for b in bands),
        )
        return backbone, mapping
    mapping = adapt_vit_bands(pretrained.vit, pretrained.band_names, bands)
    return Backbone(pretrained.vit), mapping
