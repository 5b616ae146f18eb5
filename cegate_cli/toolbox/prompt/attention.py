"""How the prompt module reaches inside a block's attention, one entry per attention class, so
that it can run attention once with its prompts (layer.py).

An entry gives, for one attention layer: the per-head queries, keys and values of `x`'s tokens
exactly as the layer's own forward has them before its softmax (its projections, q/k norms and
rotary positions), the keys and values of the prompt tokens through the same projections and
norms (no rotary position), and the steps after the softmax, split into `merge` (heads back to
tokens, and anything not affine there: timm's scale norm) and `tail` (affine in what it is given:
timm's output gate, the output projection). Entries match the class exactly, as a subclass may
compute differently. A class without an entry, a layer an entry declines (attention dropout while
training) and a keyword argument it does not know leave the prompt module on its fallback, which
calls the attention as a black box, twice.

Entries: cegate's Galileo and Clay attention, timm's `Attention` (VisionTransformer: the timm,
tiny and Prithvi families) and timm's `EvaAttention`. A new family adds one `register_attention`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from timm.layers import apply_rot_embed_cat
from timm.models.eva import EvaAttention
from timm.models.vision_transformer import Attention as TimmAttention
from torch import nn
from torch.nn import functional as F

from cegate_cli.backbone import clay, galileo


@dataclass(frozen=True)
class Heads:
    """Per-head projections, each (batch, heads, tokens, head width): `q`, `k`, `v` of x's
    tokens, and `prompt_k`, `prompt_v` of the prompts (batch 1: the same prompts for every image)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    prompt_k: torch.Tensor
    prompt_v: torch.Tensor


@dataclass(frozen=True)
class AttentionAccess:
    """One attention class's insides, as its own forward computes them.

    `heads(attention, x, prompts, kwargs)`: the projections (kwargs: the keyword arguments of the
    call, those in `keywords`); `merge(attention, heads)`: (batch, heads, tokens, width) ->
    (batch, tokens, heads * width), what the forward does to the softmax's output before its
    affine part; `tail(attention, x, merged)`: the rest, affine in `merged`; `declines(attention)`:
    true where this layer's forward cannot be split so (attention dropout while training);
    `linear_merge(attention)`: true where `merge` is linear too (no norm in it), so the gate may
    mix per head before one merge instead of after two."""

    heads: Callable[[Any, torch.Tensor, torch.Tensor, Mapping[str, Any]], Heads]
    merge: Callable[[Any, torch.Tensor], torch.Tensor]
    tail: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]
    keywords: frozenset[str] = field(default_factory=frozenset)
    declines: Callable[[Any], bool] = lambda attention: False
    linear_merge: Callable[[Any], bool] = lambda attention: True


_ACCESS: dict[type, AttentionAccess] = {}


def register_attention(cls: type, access: AttentionAccess) -> None:
    """Give the prompt module its one-pass path through attention layers of class `cls`."""
    _ACCESS[cls] = access


UNMASKED: dict[str, Any] = {"attn_mask": None, "is_causal": False}
"""Keyword arguments that blocks pass to their attention and that ask for nothing at these values."""


def attention_access(attention: nn.Module, kwargs: Mapping[str, Any]) -> AttentionAccess | None:
    """The entry for this layer and call, or None where the fallback must run. `kwargs` is the
    call's keyword arguments; those at their `UNMASKED` values count as not given."""
    access = _ACCESS.get(type(attention))
    if access is None or access.declines(attention):
        return None
    given = {name for name, value in kwargs.items() if not (name in UNMASKED and value is UNMASKED[name])}
    return access if given <= access.keywords else None


def merge_heads(attention: nn.Module, heads: torch.Tensor) -> torch.Tensor:
    """(batch, heads, tokens, width) -> (batch, tokens, heads * width)."""
    batch, count, tokens, width = heads.shape
    return heads.transpose(1, 2).reshape(batch, tokens, count * width)


def split_heads(projected: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, heads * width) -> (batch, heads, tokens, width)."""
    batch, tokens, _ = projected.shape
    return projected.reshape(batch, tokens, heads, -1).transpose(1, 2)


def split_fused(projected: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fused qkv projection (batch, tokens, 3 * heads * width) -> q, k, v per head."""
    batch, tokens, _ = projected.shape
    q, k, v = projected.reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


# -- cegate's own families ----------------------------------------------------------------------


def _galileo_heads(attention: galileo.Attention, x: torch.Tensor, prompts: torch.Tensor, kwargs: Mapping[str, Any]) -> Heads:
    def project(tokens: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        return split_heads(layer(tokens), attention.num_heads)

    return Heads(
        project(x, attention.q),
        project(x, attention.k),
        project(x, attention.v),
        project(prompts, attention.k),
        project(prompts, attention.v),
    )


def _clay_heads(attention: clay.Attention, x: torch.Tensor, prompts: torch.Tensor, kwargs: Mapping[str, Any]) -> Heads:
    q, k, v = split_fused(attention.qkv(x), attention.heads)
    _, prompt_k, prompt_v = split_fused(attention.qkv(prompts), attention.heads)
    return Heads(q, k, v, prompt_k, prompt_v)


def _projection_tail(attention: Any, x: torch.Tensor, merged: torch.Tensor) -> torch.Tensor:
    return attention.proj(merged)


register_attention(galileo.Attention, AttentionAccess(_galileo_heads, merge_heads, _projection_tail))
register_attention(clay.Attention, AttentionAccess(_clay_heads, merge_heads, _projection_tail))


# -- timm ---------------------------------------------------------------------------------------


def _timm_declines(attention: Any) -> bool:
    """Attention dropout while training drops weights of both passes at once."""
    return bool(attention.training and attention.attn_drop.p > 0)


def _timm_merge(attention: Any, heads: torch.Tensor) -> torch.Tensor:
    norm = getattr(attention, "norm", None)  # scale norm; older timm has none
    merged = merge_heads(attention, heads)
    return merged if norm is None else norm(merged)


def _timm_linear_merge(attention: Any) -> bool:
    """timm's scale norm (a LayerNorm after the heads merge, `scale_norm`) is not linear."""
    return isinstance(getattr(attention, "norm", None), (type(None), nn.Identity))


def _timm_tail(attention: Any, x: torch.Tensor, merged: torch.Tensor) -> torch.Tensor:
    gate = getattr(attention, "gate", None)  # timm's own output gate, when built `gated`
    if gate is not None:
        merged = merged * gate(x).sigmoid()
    return attention.proj_drop(attention.proj(merged))


def _timm_heads(attention: TimmAttention, x: torch.Tensor, prompts: torch.Tensor, kwargs: Mapping[str, Any]) -> Heads:
    def project(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = split_fused(attention.qkv(tokens), attention.num_heads)
        return attention.q_norm(q), attention.k_norm(k), v

    q, k, v = project(x)
    _, prompt_k, prompt_v = project(prompts)
    return Heads(q, k, v, prompt_k, prompt_v)


def _eva_projection(attention: EvaAttention, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EvaAttention's q, k, v per head, normed, before rotary positions."""
    if attention.qkv is not None:
        if attention.q_bias is None:
            projected = attention.qkv(tokens)
        else:
            bias = torch.cat((attention.q_bias, attention.k_bias, attention.v_bias))
            if getattr(attention, "qkv_bias_separate", False):
                projected = attention.qkv(tokens)
                projected += bias
            else:
                projected = F.linear(tokens, weight=attention.qkv.weight, bias=bias)
        q, k, v = split_fused(projected, attention.num_heads)
    else:
        q = split_heads(attention.q_proj(tokens), attention.num_heads)
        k = split_heads(attention.k_proj(tokens), attention.num_heads)
        v = split_heads(attention.v_proj(tokens), attention.num_heads)
    return attention.q_norm(q), attention.k_norm(k), v


def _eva_heads(attention: EvaAttention, x: torch.Tensor, prompts: torch.Tensor, kwargs: Mapping[str, Any]) -> Heads:
    q, k, v = _eva_projection(attention, x)
    _, prompt_k, prompt_v = _eva_projection(attention, prompts)
    rope = kwargs.get("rope")
    if rope is not None:
        prefix = attention.num_prefix_tokens
        half = {"half": True} if getattr(attention, "rotate_half", False) else {}

        def rotate(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t[:, :, :prefix, :], apply_rot_embed_cat(t[:, :, prefix:, :], rope, **half)], dim=2).type_as(v)

        q, k = rotate(q), rotate(k)
    return Heads(q, k, v, prompt_k, prompt_v)


register_attention(TimmAttention, AttentionAccess(_timm_heads, _timm_merge, _timm_tail, declines=_timm_declines, linear_merge=_timm_linear_merge))
register_attention(EvaAttention, AttentionAccess(_eva_heads, _timm_merge, _timm_tail, frozenset({"rope"}), _timm_declines, _timm_linear_merge))
