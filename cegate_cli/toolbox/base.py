"""What every toolbox module shares: which kind it is, where it sits, and whether it runs.

A module that is not active is bypassed: its forward returns the base result without touching
its own parameters, so it costs no compute and receives no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from cegate_cli.backbone.base import BlockBackbone
from cegate_cli.toolbox.module_key import ModuleKey


class ToolboxModule(nn.Module):
    """Base of every kind's module: a kind, a layer, an on/off switch."""

    kind: ClassVar[str]

    def __init__(self, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.active = True

    @property
    def key(self) -> ModuleKey:
        return ModuleKey(self.kind, self.layer)

    def own_parameters(self) -> list[nn.Parameter]:
        """The module's trainable parameters, never those of a wrapped base layer."""
        return [p for name, p in self.named_parameters() if not name.startswith("base_layer.")]

    def num_own_parameters(self) -> int:
        return sum(p.numel() for p in self.own_parameters())

    def merge(self) -> None:
        """Fold the module's update into the base weights for inference, where the kind can (LoRA)."""

    def unmerge(self) -> None:
        """Take a merged update out of the base weights again; a no-op when nothing is merged."""


@dataclass(frozen=True)
class BlockSite:
    """Where a kind's `attach` hook puts its module: block `layer` of `backbone`."""

    backbone: BlockBackbone
    layer: int

    @property
    def block(self) -> nn.Module:
        """The block as its family built it, also when a module has taken its place."""
        block = self.backbone.blocks[self.layer]
        while isinstance(block, ToolboxModule) and isinstance(getattr(block, "base_layer", None), nn.Module):
            block = block.base_layer
        return block

    @property
    def dim(self) -> int:
        """The backbone's token width."""
        return self.backbone.embed_dim

    def replace_block(self, module: nn.Module) -> None:
        """Put `module` in the block's place; it calls the block itself (held as `base_layer`)."""
        self.backbone.blocks[self.layer] = module
