"""Clay as a cegate backbone: the user's bands by wavelength, and the scene's pixel size, time, place.

The encoder (backbone/clay.py) generates its patch kernel from the bands' centre wavelengths, so
any band set that `clay_bands` can name is fed as it is, in the run's order; nothing is fitted
to the bands and a run needs no embedding weights of its own. The class token comes first (one
prefix token); the blocks run through `BlockBackbone`'s loop, so the toolbox and gated training
see Clay as any other family (`blocks.N.attn.qkv`, `blocks.N.mlp`).

Clay is told the ground sample distance (it scales the position code), the acquisition week and
hour, and the latitude and longitude (`Conditions`); `scene_conditions` swaps them per scene.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from cegate_cli.backbone.base import BlockBackbone, TokenLayout
from cegate_cli.backbone.clay import ClayEncoder, Conditions
from cegate_cli.backbone.clay_bands import ClayPlatform, band_table


class ClayBackbone(BlockBackbone):
    """Clay's blocks over (class token, patch tokens); feature maps drop the class token."""

    num_prefix_tokens = 1

    def __init__(
        self,
        encoder: ClayEncoder,
        bands: Sequence[str],
        platform: ClayPlatform,
        conditions: Conditions,
        feature_layers: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(encoder.depth, feature_layers)
        self.encoder = encoder
        self.bands = tuple(bands)
        self.platform = platform
        self.table = band_table(self.bands, platform)
        self.patch_size = encoder.config.patch_size
        self.embed_dim = encoder.config.dim
        self.conditions = conditions
        wavelengths = torch.tensor([band.wavelength_um for band in self.table], dtype=torch.float32)
        self.register_buffer("wavelengths_um", wavelengths, persistent=False)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.encoder.blocks

    @property
    def in_chans(self) -> int:
        return len(self.bands)

    @contextlib.contextmanager
    def scene_conditions(self, conditions: Conditions | None) -> Iterator[Conditions]:
        """Feed one scene its own pixel size, time and place while the block runs (None keeps the run's)."""
        previous = self.conditions
        self.conditions = conditions or previous
        try:
            yield self.conditions
        finally:
            self.conditions = previous

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, TokenLayout]:
        time = torch.tensor(self.conditions.time, dtype=torch.float32, device=images.device)
        location = torch.tensor(self.conditions.location, dtype=torch.float32, device=images.device)
        tokens, grid = self.encoder.embed(images, self.wavelengths_um, self.conditions.gsd_m, time, location)
        return tokens, TokenLayout(grid, self.num_prefix_tokens)
