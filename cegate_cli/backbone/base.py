"""What every backbone family gives the rest of cegate: blocks to put modules into, and feature maps.

cegate runs a backbone's transformer blocks itself instead of calling its own forward, because
- the frequency modules sit on a block's output and need the token grid of *this* input;
- blocks below the lowest trained module run without autograd, so they hold no activations;
- a segmentation head needs several levels, not just the last one.

That loop is the same for every family; what differs is how images become tokens, how a block
is called (rotary positions, for instance), where the spatial grid sits in the token sequence,
and which embedding weights were fitted to the user's bands. A family subclasses `BlockBackbone`
and answers those four questions; the toolbox, training and prediction see only this interface.
A family whose model describes each scene (pixel size, date, location) also takes a scene's own
facts while `predict` maps it (`takes_scene_info`, `scene_conditions`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cegate_cli.errors import InputError

if TYPE_CHECKING:
    from cegate_cli.data.scene_info import SceneInfo


def evenly_spaced_layers(depth: int, count: int = 4) -> tuple[int, ...]:
    """Indices of `count` blocks spread over the depth, always ending with the last block."""
    return tuple(sorted({max(0, round(depth * (i + 1) / count) - 1) for i in range(count)}))


@dataclass(frozen=True)
class TokenLayout:
    """Where the patch tokens of one forward pass sit: the spatial grid (h, w), how many prefix
    tokens (class, registers) come first, and anything a family's blocks need on every call
    (`block_kwargs`, e.g. timm EVA's rotary embedding)."""

    grid: tuple[int, int]
    num_prefix_tokens: int = 0
    groups: int = 1
    """Token groups per patch (Galileo: one token per channel group), stored patch-major:
    the tokens of patch i are `prefix + i * groups ... + groups - 1`."""
    block_kwargs: dict[str, Any] | None = None


class BlockBackbone(nn.Module):
    """A frozen-by-default stack of transformer blocks that returns feature maps (B, D, h, w).

    `frequency` holds the frequency modules keyed by block index (as strings, for ModuleDict);
    the toolbox fills it. `grad_from_layer` is set by gated training: blocks below it (and the
    embedding) run under `torch.no_grad()` because nothing below them is trained.
    """

    patch_size: int
    embed_dim: int
    num_prefix_tokens: int = 0
    takes_scene_info: bool = False
    """Whether `scene_conditions` uses a scene's facts: only then does `predict` read them."""

    def __init__(self, depth: int, feature_layers: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.depth = depth
        self.feature_layers = feature_layers or evenly_spaced_layers(depth)
        self.frequency = nn.ModuleDict()
        self.grad_from_layer = 0

    # -- what a family provides -------------------------------------------------------------------
    @property
    def blocks(self) -> nn.ModuleList:
        raise NotImplementedError

    @property
    def in_chans(self) -> int:
        """Input channels: the user's bands, in the run's order."""
        raise NotImplementedError

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, TokenLayout]:
        """(B, C, H, W) normalised images -> tokens (B, N, D) and their layout."""
        raise NotImplementedError

    def band_embedding_state(self) -> dict[str, torch.Tensor]:
        """Embedding weights fitted to the user's bands at build time (saved with the run so a run
        is self-contained); empty when the family's embedding needs no fitting."""
        return {}

    def load_band_embedding_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `band_embedding_state` gave; raises KeyError or RuntimeError on a mismatch."""

    def scene_conditions(self, scene: SceneInfo) -> contextlib.AbstractContextManager[object]:
        """Entered around the mapping of one scene, fed what its metadata says (pixel size, date,
        centre): a family conditioned on them swaps the run's values for the scene's while it is
        mapped and puts them back after. The run's own values, settled at `adapt`, hold otherwise."""
        return contextlib.nullcontext()

    # -- one loop for every family ----------------------------------------------------------------
    def check_input_size(self, height: int, width: int) -> None:
        if height % self.patch_size or width % self.patch_size:
            raise InputError(
                f"input size {height}x{width} is not a multiple of the backbone's patch size {self.patch_size}; "
                f"use a crop/tile size such as {self.patch_size * max(1, height // self.patch_size)}"
            )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        self.check_input_size(images.shape[-2], images.shape[-1])
        grad_wanted = torch.is_grad_enabled()
        features: list[torch.Tensor] = []
        with _grad_if(grad_wanted and self.grad_from_layer <= 0):
            tokens, layout = self.embed(images)
        kwargs = layout.block_kwargs or {}
        last_needed = max(self.feature_layers)
        for index, block in enumerate(self.blocks):
            if index > last_needed:
                break
            with _grad_if(grad_wanted and index >= self.grad_from_layer):
                tokens = block(tokens, **kwargs)
                frequency = self.frequency[str(index)] if str(index) in self.frequency else None
                if frequency is not None:
                    tokens = self.apply_frequency(frequency, tokens, layout)
            if index in self.feature_layers:
                features.append(self.tokens_to_map(tokens, layout))
        return features

    def apply_frequency(self, module: nn.Module, tokens: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """Run a frequency module on each token group's own spatial grid (prefix tokens pass through)."""
        if layout.groups == 1:
            return module(tokens, layout.grid)
        prefix, patches = tokens[:, : layout.num_prefix_tokens], tokens[:, layout.num_prefix_tokens :]
        batch, _, dim = patches.shape
        height, width = layout.grid
        per_group = patches.reshape(batch, height * width, layout.groups, dim).transpose(1, 2)
        mixed = module(per_group.reshape(batch * layout.groups, height * width, dim), layout.grid)
        mixed = mixed.reshape(batch, layout.groups, height * width, dim).transpose(1, 2).reshape(batch, -1, dim)
        return torch.cat((prefix, mixed), dim=1)

    def tokens_to_map(self, tokens: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """Patch tokens -> (B, D, h, w); a patch's group tokens are averaged (Galileo pools them so)."""
        patches = tokens[:, layout.num_prefix_tokens :]
        batch, _, dim = patches.shape
        height, width = layout.grid
        if layout.groups > 1:
            patches = patches.reshape(batch, height * width, layout.groups, dim).mean(dim=2)
        return patches.transpose(1, 2).reshape(batch, dim, height, width)


def _grad_if(enabled: bool) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if enabled else torch.no_grad()
