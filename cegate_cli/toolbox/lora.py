"""Spatial module: LoRA on the query and value projections of a ViT's fused qkv layer.

timm fuses q, k and v into one Linear (`attn.qkv`, output 3 x dim). This layer keeps that base
layer untouched and adds low-rank updates to the q and v thirds only:
    q += x A_q^T B_q^T * (alpha / r),   v += x A_v^T B_v^T * (alpha / r)
B starts at zero (so the module is an exact identity until trained) and A with Kaiming-uniform
values, as in the LoRA paper and peft. For inference the update can be merged into the base
weight (one matmul per layer instead of three) and unmerged again.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cegate_cli.errors import InputError
from cegate_cli.toolbox.base import ToolboxModule


class LoRAQKV(ToolboxModule):
    kind = "lora"

    def __init__(self, base_layer: nn.Linear, layer: int, rank: int = 8, alpha: float = 16.0) -> None:
        super().__init__(layer)
        if base_layer.out_features % 3:
            raise InputError(f"block {layer}: attn.qkv has {base_layer.out_features} outputs, not 3 x dim")
        self.base_layer = base_layer
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.dim = base_layer.out_features // 3
        in_features = base_layer.in_features
        factory = {"device": base_layer.weight.device, "dtype": base_layer.weight.dtype}
        self.lora_A_q = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lora_B_q = nn.Parameter(torch.zeros(self.dim, rank, **factory))
        self.lora_A_v = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lora_B_v = nn.Parameter(torch.zeros(self.dim, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A_q, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.lora_A_v, a=math.sqrt(5))
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if not self.active or self.merged:
            return result
        q, k, v = result.split(self.dim, dim=-1)
        x = x.to(self.lora_A_q.dtype)
        q = q + (x @ self.lora_A_q.t() @ self.lora_B_q.t() * self.scaling).to(q.dtype)
        v = v + (x @ self.lora_A_v.t() @ self.lora_B_v.t() * self.scaling).to(v.dtype)
        return torch.cat((q, k, v), dim=-1)

    def get_delta_weight(self) -> torch.Tensor:
        """The (3 dim, in) update B A * scaling, zero on the key rows."""
        zeros = torch.zeros(self.dim, self.base_layer.in_features, device=self.lora_A_q.device, dtype=self.lora_A_q.dtype)
        return torch.cat(
            (self.lora_B_q @ self.lora_A_q * self.scaling, zeros, self.lora_B_v @ self.lora_A_v * self.scaling), dim=0
        )

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update into the base weight; a no-op when bypassed or already merged."""
        if self.merged or not self.active:
            return
        merged_weight = self.base_layer.weight + self.get_delta_weight().to(self.base_layer.weight.dtype)
        if not torch.isfinite(merged_weight).all():
            raise ValueError(f"LoRA in block {self.layer}: merging would produce non-finite weights")
        self.base_layer.weight.copy_(merged_weight)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.base_layer.weight.sub_(self.get_delta_weight().to(self.base_layer.weight.dtype))
        self.merged = False
