"""timm Vision Transformers as cegate backbones: `VisionTransformer` (DINOv2, Prithvi, tiny) and
`Eva` (separate q/k/v projections and rotary positions, the layout of EVA-02 and DINOv3-style
models). Both embed with a patch-embedding convolution fitted to the user's bands.

`PretrainedViT` is what the timm, Prithvi and tiny families load; it builds a `Backbone` for a
run's bands (backbone/band_adapt.py fits the patch embedding) and takes no other inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from cegate_cli.backbone.band_adapt import BandMapping, adapt_vit_bands
from cegate_cli.backbone.base import BlockBackbone, TokenLayout, evenly_spaced_layers
from cegate_cli.backbone.family import FittedInputs
from cegate_cli.errors import InputError

if TYPE_CHECKING:
    from cegate_cli.data.stats import BandStats

__all__ = ["Backbone", "PretrainedViT", "evenly_spaced_layers"]


class Backbone(BlockBackbone):
    """A timm ViT (`VisionTransformer` or `Eva`), built with `dynamic_img_size=True`."""

    def __init__(self, vit: VisionTransformer | Eva, feature_layers: tuple[int, ...] | None = None) -> None:
        if not isinstance(vit, (VisionTransformer, Eva)):
            raise InputError(f"cegate adapts timm VisionTransformer and Eva models; got {type(vit).__name__}")
        if not getattr(vit, "dynamic_img_size", False):
            raise InputError("the backbone ViT must be built with dynamic_img_size=True so crops of any size work")
        super().__init__(len(vit.blocks), feature_layers)
        self.vit = vit
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.embed_dim = int(vit.embed_dim)
        self.num_prefix_tokens = int(vit.num_prefix_tokens)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.vit.blocks

    @property
    def in_chans(self) -> int:
        return int(self.vit.patch_embed.proj.weight.shape[1])

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, TokenLayout]:
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        tokens = self.vit.patch_embed(images)
        if isinstance(self.vit, Eva):
            tokens, rope = self.vit._pos_embed(tokens)
            kwargs = {"rope": rope}
        else:
            tokens = self.vit._pos_embed(tokens)
            tokens = self.vit.patch_drop(tokens)
            kwargs = None
        tokens = self.vit.norm_pre(tokens)
        return tokens, TokenLayout(grid, self.num_prefix_tokens, block_kwargs=kwargs)

    def band_embedding_state(self) -> dict[str, torch.Tensor]:
        """The band-adapted patch embedding: derived from the Hub weights, saved so runs are self-contained."""
        proj = self.vit.patch_embed.proj
        state = {"patch_embed.weight": proj.weight.detach()}
        if proj.bias is not None:
            state["patch_embed.bias"] = proj.bias.detach()
        return state

    def load_band_embedding_state(self, state: dict[str, torch.Tensor]) -> None:
        proj = self.vit.patch_embed.proj
        with torch.no_grad():
            proj.weight.copy_(state["patch_embed.weight"])
            if proj.bias is not None:
                proj.bias.copy_(state["patch_embed.bias"])


@dataclass
class PretrainedViT:
    """A timm VisionTransformer (or Eva: separate q/k/v, rotary positions) built with `dynamic_img_size=True` and `num_classes=0`.

    `band_names` are the canonical names (see `cegate_cli.data.bands`) of the input channels the
    weights were trained on, in order, so band adaptation can copy kernels by name; `None` when
    the weights do not say (the channels are then matched by position only if counts agree).
    """

    vit: VisionTransformer | Eva
    band_names: tuple[str, ...] | None
    architecture: str

    @property
    def embed_dim(self) -> int:
        return int(self.vit.embed_dim)

    def patch_size(self, options: Any = None) -> int:
        return int(self.vit.patch_embed.patch_size[0])

    def check_run(self, bands: Sequence[str], options: Any = None) -> None:
        """Any bands fit: those without a pretrained kernel start from the mean one."""

    def fit_inputs(self, options: Any, images: Sequence[Path], stats: BandStats) -> FittedInputs:
        """A ViT takes pixels only, normalised with the run's own statistics."""
        return FittedInputs(None, stats)

    def build(self, bands: Sequence[str], stats: BandStats | None = None, inputs: Any = None) -> tuple[Backbone, BandMapping]:
        """The patch embedding fitted to `bands` (in place: the ViT becomes the run's)."""
        mapping = adapt_vit_bands(self.vit, self.band_names, bands)
        return Backbone(self.vit), mapping

    def pretrained_backbone(self) -> Backbone:
        return Backbone(self.vit)
