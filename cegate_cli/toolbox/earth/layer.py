"""Frequency module: the Earth-Adapter on a block's output tokens.

Remote-sensing shifts (sensor noise, resolution, season) often live in particular frequency
bands. The patch tokens are put back on their grid (taken from the actual input, so any crop
or tile size works), split with an orthonormal 2-D FFT into a low-frequency part (a centred box
after fftshift) and the high-frequency remainder, and three bottleneck experts (raw, low, high)
are mixed per token by a softmax router. The experts' up projections start at zero, so the
module is an exact identity until trained (init "identity", the default). Init "kaiming" is the
Earth-Adapter authors': Kaiming-initialised ReLU experts and a learnable scale starting at 0.1,
so every part of the module has gradient at the first Fisher scoring. Prefix tokens (class,
registers) pass unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from cegate_cli.toolbox.adapter.layer import Bottleneck
from cegate_cli.toolbox.base import BlockSite, ToolboxModule
from cegate_cli.toolbox.earth import EARTH_INITS, EarthOptions


def low_pass_mask(height: int, width: int, ratio: float, device: torch.device) -> torch.Tensor:
    """A centred box covering `ratio` of each frequency axis (at least the DC term)."""
    mask = torch.zeros(height, width, device=device)
    half_h = max(1, round(height * ratio / 2))
    half_w = max(1, round(width * ratio / 2))
    cy, cx = height // 2, width // 2
    mask[max(0, cy - half_h + 1) : cy + half_h, max(0, cx - half_w + 1) : cx + half_w] = 1.0
    return mask


def split_frequencies(grid: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D, H, W) -> (low, high) with low + high == grid (up to float rounding)."""
    spectrum = torch.fft.fftshift(torch.fft.fft2(grid.float(), norm="ortho"), dim=(-2, -1))
    mask = low_pass_mask(grid.shape[-2], grid.shape[-1], ratio, grid.device)
    low_spectrum = torch.fft.ifftshift(spectrum * mask, dim=(-2, -1))
    low = torch.fft.ifft2(low_spectrum, norm="ortho").real.to(grid.dtype)
    return low, grid - low


class EarthAdapter(ToolboxModule):
    kind = "earth"

    def __init__(self, layer: int, dim: int, hidden: int = 16, low_freq_ratio: float = 0.25, num_prefix_tokens: int = 1, init: str = "identity") -> None:
        super().__init__(layer)
        if init not in EARTH_INITS:
            raise ValueError(f"Earth-Adapter init {init!r}: choose {' or '.join(EARTH_INITS)}")
        self.low_freq_ratio = low_freq_ratio
        self.num_prefix_tokens = num_prefix_tokens
        kaiming = init == "kaiming"
        self.experts = nn.ModuleList([Bottleneck(dim, hidden, kaiming=kaiming) for _ in range(3)])  # raw, low, high
        self.router = nn.Linear(dim, 3)
        self.scale = nn.Parameter(torch.full((), 0.1 if kaiming else 1.0))

    def forward(self, tokens: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        if not self.active:
            return tokens
        prefix, patches = tokens[:, : self.num_prefix_tokens], tokens[:, self.num_prefix_tokens :]
        batch, count, dim = patches.shape
        height, width = grid_size
        grid = patches.transpose(1, 2).reshape(batch, dim, height, width)
        low, high = split_frequencies(grid, self.low_freq_ratio)
        low = low.reshape(batch, dim, count).transpose(1, 2)
        high = high.reshape(batch, dim, count).transpose(1, 2)
        weights = self.router(patches).softmax(dim=-1)  # (B, N, 3)
        mixed = weights[..., 0:1] * self.experts[0](patches) + weights[..., 1:2] * self.experts[1](low) + weights[..., 2:3] * self.experts[2](high)
        return torch.cat((prefix, patches + mixed * self.scale), dim=1)


def attach(site: BlockSite, options: EarthOptions) -> EarthAdapter:
    """The kind's hook: on the block's output, which the backbone's loop hands over with its grid."""
    earth = EarthAdapter(site.layer, site.dim, options.hidden, options.low_freq_ratio, site.backbone.num_prefix_tokens, init=options.init)
    site.backbone.frequency[str(site.layer)] = earth
    return earth
