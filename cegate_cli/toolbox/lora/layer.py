"""Spatial module: LoRA on the query and value projections of an attention layer.

Two layouts of the same thing, one set of parameters and one update rule:
- `LoRAQKV` wraps a fused qkv Linear (timm ViT: `attn.qkv`, output 3 x dim) and adds the updates
  to its q and v thirds;
- `LoRAQV` wraps separate q and v Linears (Galileo's `attn.q`/`attn.v`, timm EVA's
  `attn.q_proj`/`attn.v_proj`): it takes the query's place and installs a small hand-off in the
  value's place, so the block's own forward calls both without knowing.
In both:  q += x A_q^T B_q^T * (alpha / r),   v += x A_v^T B_v^T * (alpha / r).
B starts at zero (so the module is an exact identity until trained) and A with Kaiming-uniform
values, as in the LoRA paper and peft. For inference the update can be merged into the base
weights and unmerged again. Parameter names are the same in both layouts, so saved runs read alike.
`attach_lora` is the one place that knows the attention layouts cegate supports (a fused `qkv`
Linear, or separate q/v Linears under either naming): a new family whose blocks follow one of
them needs no change here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cegate_cli.errors import InputError
from cegate_cli.toolbox.base import BlockSite, ToolboxModule
from cegate_cli.toolbox.lora import LoRAOptions


class LoRA(ToolboxModule):
    """The low-rank q and v updates, their merge into base weights, and the on/off switch."""

    kind = "lora"

    def __init__(self, layer: int, in_features: int, dim: int, rank: int, alpha: float, factory: dict) -> None:
        super().__init__(layer)
        if rank < 1:
            raise InputError(f"LoRA rank must be at least 1, got {rank}")
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.dim = dim
        self.lora_A_q = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lora_B_q = nn.Parameter(torch.zeros(dim, rank, **factory))
        self.lora_A_v = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lora_B_v = nn.Parameter(torch.zeros(dim, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A_q, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.lora_A_v, a=math.sqrt(5))
        self.merged = False

    def update(self, x: torch.Tensor, which: str, like: torch.Tensor) -> torch.Tensor:
        """The low-rank addition to projection `which` ("q" or "v") for input x."""
        a, b = (self.lora_A_q, self.lora_B_q) if which == "q" else (self.lora_A_v, self.lora_B_v)
        return (x.to(a.dtype) @ a.t() @ b.t() * self.scaling).to(like.dtype)

    def delta(self, which: str) -> torch.Tensor:
        """The (dim, in) weight update B A * scaling of projection `which`."""
        a, b = (self.lora_A_q, self.lora_B_q) if which == "q" else (self.lora_A_v, self.lora_B_v)
        return b @ a * self.scaling

    @property
    def applies_update(self) -> bool:
        return self.active and not self.merged

    def _base_weights(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """(base weight, its full update) pairs that merge/unmerge add and subtract."""
        raise NotImplementedError

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update into the base weights; a no-op when bypassed or already merged."""
        if self.merged or not self.active:
            return
        pairs = self._base_weights()
        merged = [weight + delta.to(weight.dtype) for weight, delta in pairs]
        if not all(torch.isfinite(m).all() for m in merged):
            raise ValueError(f"LoRA in block {self.layer}: merging would produce non-finite weights")
        for (weight, _), new in zip(pairs, merged):
            weight.copy_(new)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        for weight, delta in self._base_weights():
            weight.sub_(delta.to(weight.dtype))
        self.merged = False


class LoRAQKV(LoRA):
    """LoRA on a fused qkv Linear: the module takes the Linear's place."""

    def __init__(self, base_layer: nn.Linear, layer: int, rank: int = 8, alpha: float = 16.0) -> None:
        if base_layer.out_features % 3:
            raise InputError(f"block {layer}: attn.qkv has {base_layer.out_features} outputs, not 3 x dim")
        factory = {"device": base_layer.weight.device, "dtype": base_layer.weight.dtype}
        super().__init__(layer, base_layer.in_features, base_layer.out_features // 3, rank, alpha, factory)
        self.base_layer = base_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if not self.applies_update:
            return result
        q, k, v = result.split(self.dim, dim=-1)
        return torch.cat((q + self.update(x, "q", q), k, v + self.update(x, "v", v)), dim=-1)

    def get_delta_weight(self) -> torch.Tensor:
        """The (3 dim, in) update, zero on the key rows."""
        zeros = torch.zeros(self.dim, self.base_layer.in_features, device=self.lora_A_q.device, dtype=self.lora_A_q.dtype)
        return torch.cat((self.delta("q"), zeros, self.delta("v")), dim=0)

    def _base_weights(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        return [(self.base_layer.weight, self.get_delta_weight())]


class LoRAQV(LoRA):
    """LoRA on separate q and v Linears: the module takes the query's place (its forward is the
    query projection) and `value_projection` takes the value's."""

    def __init__(self, query: nn.Linear, value: nn.Linear, layer: int, rank: int = 8, alpha: float = 16.0) -> None:
        if (query.in_features, query.out_features) != (value.in_features, value.out_features):
            raise InputError(f"block {layer}: q and v projections differ in shape; LoRA needs them alike")
        factory = {"device": query.weight.device, "dtype": query.weight.dtype}
        super().__init__(layer, query.in_features, query.out_features, rank, alpha, factory)
        self.base_layer = nn.ModuleDict({"q": query, "v": value})
        self._value_projection = (_ValueProjection(self),)  # a tuple: not a registered child

    @property
    def value_projection(self) -> nn.Module:
        return self._value_projection[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer["q"](x)
        return result + self.update(x, "q", result) if self.applies_update else result

    def forward_value(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer["v"](x)
        return result + self.update(x, "v", result) if self.applies_update else result

    def _base_weights(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        return [(self.base_layer["q"].weight, self.delta("q")), (self.base_layer["v"].weight, self.delta("v"))]


class _ValueProjection(nn.Module):
    """What sits in the value Linear's place: calls its owner's value path. The owner is held
    outside the module tree (it already sits in the query's place), so its parameters are not
    registered twice."""

    def __init__(self, owner: LoRAQV) -> None:
        super().__init__()
        self._owner = (owner,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._owner[0].forward_value(x)

    def extra_repr(self) -> str:
        return f"value path of LoRA in block {self._owner[0].layer}"


def attach(site: BlockSite, options: LoRAOptions) -> LoRA:
    """The kind's hook: LoRA on the block's attention."""
    assert options.alpha is not None  # LoRAOptions works it out when made
    return attach_lora(site.block.attn, site.layer, options.rank, options.alpha)


SEPARATE_QV_NAMES: tuple[tuple[str, str], ...] = (("q", "v"), ("q_proj", "v_proj"))
"""Attribute names of separate query/value Linears: Galileo's, and timm EVA's (`qkv_fused=False`)."""


def attach_lora(attention: nn.Module, layer: int, rank: int, alpha: float) -> LoRA:
    """Put LoRA on an attention layer's q and v projections, whichever layout it has."""
    qkv = getattr(attention, "qkv", None)
    if isinstance(qkv, nn.Linear):
        if any(getattr(attention, bias, None) is not None for bias in ("q_bias", "v_bias")):
            raise InputError(
                f"block {layer}: this attention adds its own q/v biases to a fused qkv weight, which LoRA "
                "cannot wrap; build the model with separate q/k/v projections (timm: qkv_fused=False)"
            )
        lora: LoRA = LoRAQKV(qkv, layer, rank, alpha)
        attention.qkv = lora
        return lora
    for q_name, v_name in SEPARATE_QV_NAMES:
        query, value = getattr(attention, q_name, None), getattr(attention, v_name, None)
        if isinstance(query, nn.Linear) and isinstance(value, nn.Linear):
            separate = LoRAQV(query, value, layer, rank, alpha)
            setattr(attention, q_name, separate)
            setattr(attention, v_name, separate.value_projection)
            return separate
    supported = ", ".join(["a fused Linear `qkv`"] + [f"Linears `{q}` and `{v}`" for q, v in SEPARATE_QV_NAMES])
    raise InputError(f"block {layer}: LoRA supports attention with {supported}; found {type(attention).__name__} without them")
