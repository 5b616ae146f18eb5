"""Prompt module: deep visual prompt tuning (VPT-deep, Jia et al. 2022) in one block's attention.

VPT-deep puts learnable prompt tokens into each block's sequence, after the prefix tokens
(class, registers) and before the patch tokens, and drops the block's outputs at their places,
so the next block sees the sequence it always sees. Everything in a block but attention acts on
each token by itself, so the prompts reach the image's tokens through attention alone, as keys
and values. This module therefore sits in the block's attention (`block.attn`): it prepends the
prompts to the attention's input and drops them from its output. The prompts are learned where
the attention reads its tokens (after the block's norm): VPT's prompts seen through that norm,
without restricting them to what the norm can produce.

Identity at insertion: a zero-initialised scalar gate g on the prompts' effect,

    out = attn(x) + g * (attn([prefix, prompts, patches])[at x's tokens] - attn(x)),

so with g = 0 the module returns attention's own output, exactly. Zero-valued prompts would be no
identity (attention gives a token weight whatever its value). A gate inside attention (a bias
of log g on the prompts' logits) is exact only at a bias of -inf, through which no gradient
passes, and any finite bias fails on backbones whose attention logits run into the thousands
(galileo-nano's first block): there the smallest weight let in moves the features by whole
units. The gate's gradient at 0 is how far the prompts would move the output (Fisher scores the
module by it), and once g moves the prompts receive gradient in proportion to it.

One attention pass computes both terms. With per-head queries q of x's tokens and keys and
values of x (k_x, v_x) and of the prompts (k_p, v_p), one softmax over the keys [k_x; k_p] with
values [v_x, 1, 0] for x's keys and [0, 0, 1] for the prompts' gives N_x / Z (N_x: x's values
weighted by exp(logit); Z: exp(logit) summed over all keys), the share of the attention mass on
x's keys, s_x = Z_x / Z, and on the prompts', s_p = Z_p / Z. Then

    attention over x alone          = (N_x / Z) / s_x
    attention over prompts and x    = N_x / Z + s_p * softmax(q k_p^T) v_p

(the prompts' own part, over their few keys, computed apart), combined per head before the
layer's affine tail (timm: its output gate and projection), where gating equals gating its
output. The prompts' values stay out of the pass, so neither term is a small difference of large
ones, however much of the attention the prompts take. Attention over x alone is a pass of its
own where s_x underflows (the prompts' logits far above all of x's) and while g is exactly 0:
then the prompts get a gradient of exactly 0, as Adam would otherwise move them on rounding
noise. With g = 0 and no gradient asked of it the module returns attention's own output and
runs nothing else. attention.py holds what each attention class exposes for this; with a class
it does not know the module calls the attention as a black box, twice (`two_pass`).

Without gradient, on CPU, the pass runs at the heads' own width instead (the marks pad it to
width + 2, rounded to 8): torch's fused CPU kernel gives attention over x alone, out_x, and the
log-sum-exp of x's logits, lse_x; with lse_p that of the prompts' own logits, s_p =
sigmoid(lse_p - lse_x) and attention over prompts and x = out_x + s_p * (softmax(q k_p^T) v_p -
out_x). Training keeps the marked pass: that kernel's log-sum-exp carries no gradient.

Rotary position embeddings passed as `rope` (timm Eva) are sized to the patch tokens; the
prompts get the identity rotation (sin 0, cos 1), so they carry no position.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cegate_cli.errors import InputError
from cegate_cli.toolbox.base import BlockSite, ToolboxModule
from cegate_cli.toolbox.prompt import PromptOptions
from cegate_cli.toolbox.prompt.attention import AttentionAccess, attention_access


class VisualPrompt(ToolboxModule):
    """One block's prompt tokens (`prompts`, (1, tokens, dim)) and the gate on their effect."""

    kind = "prompt"

    def __init__(self, base_layer: nn.Module, layer: int, dim: int, tokens: int, num_prefix_tokens: int) -> None:
        super().__init__(layer)
        reference = next(base_layer.parameters(), None)
        factory: dict[str, Any] = {} if reference is None else {"device": reference.device, "dtype": reference.dtype}
        self.base_layer = base_layer
        self.num_prefix_tokens = num_prefix_tokens
        # Unit-variance entries, like the normalised tokens the attention reads.
        self.prompts = nn.Parameter(torch.randn(1, tokens, dim, **factory))
        self.gate = nn.Parameter(torch.zeros((), **factory))

    @property
    def tokens(self) -> int:
        return int(self.prompts.shape[1])

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if not self.active:
            return self.base_layer(x, **kwargs)
        if kwargs.get("attn_mask") is not None:
            raise ValueError(f"prompt in block {self.layer}: the attention was given a mask of its own, which the prompts cannot extend")
        gradient = torch.is_grad_enabled() and self.gate.requires_grad
        if not gradient and self.gate_is_zero():
            return self.base_layer(x, **kwargs)
        access = attention_access(self.base_layer, kwargs)
        if access is None:
            return self.two_pass(x, kwargs)
        return self.one_pass(access, x, kwargs, exact_alone=gradient and self.gate_is_zero())

    def gate_is_zero(self) -> bool:
        return bool(self.gate.detach() == 0)

    def two_pass(self, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        """The fallback: attention as a black box, once over `x` and once over the prompts and `x`."""
        out = self.base_layer(x, **kwargs)
        return out + self.gate.to(out.dtype) * (self.prompted(x, kwargs) - out)

    def one_pass(self, access: AttentionAccess, x: torch.Tensor, kwargs: dict[str, Any], exact_alone: bool = False) -> torch.Tensor:
        """The module's output from one attention pass over x's keys and the prompts' (the module
        docstring has the algebra); `exact_alone`: attention over x alone from a pass of its own."""
        attention = self.base_layer
        heads = access.heads(attention, x, self.prompts.to(x.dtype), kwargs)
        batch, count = heads.v.shape[:2]
        prompt_k = heads.prompt_k.to(heads.k.dtype).expand(batch, count, -1, -1)
        prompt_v = heads.prompt_v.to(heads.v.dtype).expand(batch, count, -1, -1)
        pair = None if torch.is_grad_enabled() else attend_with_lse(heads.q, heads.k, heads.v, prompt_k, prompt_v)
        alone, together = pair or attend_marked(heads.q, heads.k, heads.v, prompt_k, prompt_v, exact_alone)
        gate = self.gate.to(alone.dtype)
        if access.linear_merge(attention):  # mix per head, merge once
            merged = access.merge(attention, alone + gate * (together - alone))
        else:  # a norm in the merge: mix after it, as the two passes would
            merged = access.merge(attention, alone)
            merged = merged + gate * (access.merge(attention, together) - merged)
        return access.tail(attention, x, merged)

    def prompted(self, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        """Attention over the prompts and `x`, at `x`'s tokens only: the attention called as a black box."""
        prefix, count = self.num_prefix_tokens, self.tokens
        prompts = self.prompts.to(x.dtype).expand(x.shape[0], -1, -1)
        sequence = torch.cat((x[:, :prefix], prompts, x[:, prefix:]), dim=1)
        out = self.base_layer(sequence, **with_prompt_positions(kwargs, count, patches=x.shape[1] - prefix))
        return torch.cat((out[:, :prefix], out[:, prefix + count :]), dim=1)

    def extra_repr(self) -> str:
        return f"tokens={self.tokens}, after {self.num_prefix_tokens} prefix token(s)"


def attend_marked(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prompt_k: torch.Tensor, prompt_v: torch.Tensor, exact_alone: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over x alone and over the prompts and x, per head, from one pass with marked
    values (the module docstring has the algebra); `exact_alone`: the first from a pass of its own."""
    width = v.shape[-1]
    values = marked_values(v, prompt_k.shape[2])
    scale = 1.0 / math.sqrt(q.shape[-1])  # scaled_dot_product_attention's own
    # Queries and keys padded with zeros to the values' width (their products unchanged, the
    # scale given): fused CPU and CUDA kernels want one width for all three, and without them
    # attention falls back to a path several times slower.
    padding = (0, max(0, values.shape[-1] - q.shape[-1]))
    keys = F.pad(torch.cat((k, prompt_k), dim=2), padding)
    attended = F.scaled_dot_product_attention(F.pad(q, padding), keys, values, scale=scale)
    within, mass_x, mass_p = attended[..., :width], attended[..., width : width + 1], attended[..., width + 1 : width + 2]
    weights = torch.softmax(q @ prompt_k.transpose(-2, -1) * scale, dim=-1)
    together = within + mass_p * (weights.to(prompt_v.dtype) @ prompt_v)
    if exact_alone:
        alone = F.scaled_dot_product_attention(q, k, v)
    else:
        lost = mass_x <= _smallest_share(mass_x.dtype)
        alone = within / torch.where(lost, torch.ones_like(mass_x), mass_x)
        if bool(lost.any()):
            alone = torch.where(lost, F.scaled_dot_product_attention(q, k, v), alone)
    return alone, together


def _cpu_attention_with_lse() -> Any:
    """torch's fused CPU attention that also returns the log-sum-exp of its logits (a private op),
    or None where this torch has none or calls it otherwise (tried once, on one token)."""
    try:
        op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        one = torch.zeros(1, 1, 1, 8)
        out, lse = op(one, one, one, 0.0, False, attn_mask=None, scale=1.0)
    except (AttributeError, RuntimeError, TypeError):
        return None
    return op if out.shape == one.shape and lse.shape == one.shape[:3] else None


CPU_ATTENTION_WITH_LSE = _cpu_attention_with_lse()
LSE_DTYPES = frozenset({torch.float32, torch.float64, torch.bfloat16, torch.float16})
"""The dtypes that op takes."""


def attend_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prompt_k: torch.Tensor, prompt_v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`attend_marked`'s two results from one fused pass over x's keys at the heads' own width and
    the log-sum-exps of x's logits and the prompts'; None where the op is missing or does not take
    these tensors (not on CPU, another dtype, unequal widths). Its log-sum-exp has no gradient:
    for inference only."""
    if CPU_ATTENTION_WITH_LSE is None or {t.device.type for t in (q, k, v)} != {"cpu"}:
        return None
    if not (q.dtype == k.dtype == v.dtype and q.dtype in LSE_DTYPES and q.shape[-1] == k.shape[-1] == v.shape[-1]):
        return None
    scale = 1.0 / math.sqrt(q.shape[-1])  # scaled_dot_product_attention's own
    alone, lse_x = CPU_ATTENTION_WITH_LSE(q, k, v, 0.0, False, attn_mask=None, scale=scale)
    logits = q @ prompt_k.transpose(-2, -1) * scale
    lse_p = torch.logsumexp(logits.to(lse_x.dtype), dim=-1)  # lse_x: float32 at least
    share = torch.sigmoid(lse_p - lse_x).unsqueeze(-1).to(alone.dtype)  # the prompts' share of the mass
    attended_p = torch.softmax(logits, dim=-1).to(prompt_v.dtype) @ prompt_v
    return alone, torch.lerp(alone, attended_p, share)


MARK_ALIGNMENT = 8
"""The value width of the one pass (and the queries' and keys', padded to it) is rounded up to a
multiple of this, as fused attention kernels want it."""


def marked_values(v: torch.Tensor, prompts: int) -> torch.Tensor:
    """The values of the one pass, (batch, heads, tokens + prompts, width + marks): x's values
    with a 1 in the first mark column, then `prompts` rows of zeros with a 1 in the second."""
    batch, count, tokens, width = v.shape
    marks = -(-(width + 2) // MARK_ALIGNMENT) * MARK_ALIGNMENT - width
    of_x = v.new_zeros(marks)
    of_x[0] = 1
    of_prompts = v.new_zeros(width + marks)
    of_prompts[width + 1] = 1
    rows_x = torch.cat((v, of_x.expand(batch, count, tokens, marks)), dim=-1)
    return torch.cat((rows_x, of_prompts.expand(batch, count, prompts, width + marks)), dim=2)


def _smallest_share(dtype: torch.dtype) -> float:
    """Below this, x's share of the attention mass has lost digits to underflow."""
    info = torch.finfo(dtype)
    return info.tiny / info.eps


def with_prompt_positions(kwargs: dict[str, Any], count: int, patches: int) -> dict[str, Any]:
    """Attention's keyword arguments for a sequence with `count` prompts before its `patches`
    patch tokens: timm's rotary embedding (`rope`, [sin | cos] on the last axis, one row per patch
    token) gets `count` identity rows (sin 0, cos 1) in front, so the prompts are not rotated."""
    rope = kwargs.get("rope")
    if not isinstance(rope, torch.Tensor):
        return kwargs
    if rope.shape[-2] != patches or rope.shape[-1] % 2:
        raise ValueError(
            f"a rotary embedding of shape {tuple(rope.shape)} for {patches} patch tokens: the prompt kind "
            "knows timm's layout, one [sin | cos] row per patch token"
        )
    shape = (*rope.shape[:-2], count, rope.shape[-1] // 2)
    identity = torch.cat((rope.new_zeros(shape), rope.new_ones(shape)), dim=-1)
    return {**kwargs, "rope": torch.cat((identity, rope), dim=-2)}


def attach(site: BlockSite, options: PromptOptions) -> VisualPrompt:
    """The kind's hook: the prompt module takes the place of the block's attention and calls it."""
    block = site.block
    attention = getattr(block, "attn", None)
    if not isinstance(attention, nn.Module):
        raise InputError(
            f"block {site.layer} ({type(block).__name__}) has no attention module `attn` for the prompts; leave prompt out of --modules for this backbone"
        )
    prompt = VisualPrompt(attention, site.layer, site.dim, options.tokens, site.backbone.num_prefix_tokens)
    block.attn = prompt
    return prompt
