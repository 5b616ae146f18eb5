"""Semantic module: a bottleneck Adapter in parallel to a block's MLP (AdaptFormer style).

    mlp_out = mlp(x) + up(GELU(down(x))) * scale

`up` starts at zero so the module is an exact identity until trained.
"""

from __future__ import annotations

import torch
from torch import nn

from cegate_cli.toolbox.adapter import AdapterOptions
from cegate_cli.toolbox.base import BlockSite, ToolboxModule


class Bottleneck(nn.Module):
    """down -> GELU -> up, with the up projection zero-initialised (an exact identity until trained).

    `kaiming=True` is the Earth-Adapter authors' expert: ReLU, both projections Kaiming-initialised,
    zero biases. It is not an identity at initialisation, but every weight gets gradient at once,
    where the zero-initialised form gives gradient only to `up` at the first Fisher scoring.
    """

    def __init__(self, dim: int, hidden: int, kaiming: bool = False) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act: nn.Module = nn.ReLU() if kaiming else nn.GELU()
        self.up = nn.Linear(hidden, dim)
        if kaiming:
            for linear in (self.down, self.up):
                nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")
                nn.init.zeros_(linear.bias)
        else:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class MLPAdapter(ToolboxModule):
    kind = "adapter"

    def __init__(self, base_layer: nn.Module, layer: int, dim: int, hidden: int = 32, scale: float = 1.0) -> None:
        super().__init__(layer)
        self.base_layer = base_layer
        self.bottleneck = Bottleneck(dim, hidden)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if not self.active:
            return result
        return result + self.bottleneck(x) * self.scale


def attach(site: BlockSite, options: AdapterOptions) -> MLPAdapter:
    """The kind's hook: the Adapter takes the MLP's place and calls it."""
    block = site.block
    block.mlp = adapter = MLPAdapter(block.mlp, site.layer, site.dim, options.hidden, options.scale)
    return adapter
