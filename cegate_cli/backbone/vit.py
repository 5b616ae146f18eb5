"""The backbone's forward path: a timm ViT run block by block, giving multi-level feature maps.

cegate runs the blocks itself (instead of `vit.forward_features`) for three reasons:
- the frequency modules sit on a block's output and need the token grid of *this* input;
- blocks below the lowest trained module run without autograd, so they hold no activations;
- a segmentation head needs several levels, not just the last one.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from timm.models.vision_transformer import VisionTransformer

from cegate_cli.errors import InputError


def evenly_spaced_layers(depth: int, count: int = 4) -> tuple[int, ...]:
    """Indices of `count` blocks spread over the depth, always ending with the last block."""
    return tuple(sorted({max(0, round(depth * (i + 1) / count) - 1) for i in range(count)}))


class Backbone(nn.Module):
    """A frozen-by-default timm ViT that returns feature maps (B, D, H/p, W/p) of several blocks.

    `frequency` holds the frequency modules keyed by block index (as strings, for ModuleDict);
    the toolbox fills it. `grad_from_layer` is set by gated training: blocks below it (and the
    patch embedding) run under `torch.no_grad()` because nothing below them is trained.
    """

    def __init__(self, vit: VisionTransformer, feature_layers: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if not getattr(vit, "dynamic_img_size", False):
            raise InputError("the backbone ViT must be built with dynamic_img_size=True so crops of any size work")
        self.vit = vit
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.embed_dim = int(vit.embed_dim)
        self.depth = len(vit.blocks)
        self.num_prefix_tokens = int(vit.num_prefix_tokens)
        self.feature_layers = feature_layers or evenly_spaced_layers(self.depth)
        self.frequency = nn.ModuleDict()
        self.grad_from_layer = 0

    @property
    def in_chans(self) -> int:
        return int(self.vit.patch_embed.proj.weight.shape[1])

    def check_input_size(self, height: int, width: int) -> None:
        if height % self.patch_size or width % self.patch_size:
            raise InputError(
                f"input size {height}x{width} is not a multiple of the backbone's patch size {self.patch_size}; "
                f"use a crop/tile size such as {self.patch_size * max(1, height // self.patch_size)}"
            )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        batch, _, height, width = images.shape
        self.check_input_size(height, width)
        grid = (height // self.patch_size, width // self.patch_size)
        grad_wanted = torch.is_grad_enabled()
        features: list[torch.Tensor] = []
        with _grad_if(grad_wanted and self.grad_from_layer <= 0):
            tokens = self.vit.patch_embed(images)
            tokens = self.vit._pos_embed(tokens)
            tokens = self.vit.patch_drop(tokens)
            tokens = self.vit.norm_pre(tokens)
        last_needed = max(self.feature_layers)
        for index, block in enumerate(self.vit.blocks):
            if index > last_needed:
                break
            with _grad_if(grad_wanted and index >= self.grad_from_layer):
                tokens = block(tokens)
                frequency = self.frequency[str(index)] if str(index) in self.frequency else None
                if frequency is not None:
                    tokens = frequency(tokens, grid)
            if index in self.feature_layers:
                features.append(self.tokens_to_map(tokens, grid))
        return features

    def tokens_to_map(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        patches = tokens[:, self.num_prefix_tokens :]
        return patches.transpose(1, 2).reshape(tokens.shape[0], self.embed_dim, grid[0], grid[1])


def _grad_if(enabled: bool) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if enabled else torch.no_grad()
