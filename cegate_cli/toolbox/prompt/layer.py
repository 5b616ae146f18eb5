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
module by it), and once g moves the prompts receive gradient in proportion to it. The cost:
attention runs twice in a block whose module is active.

Rotary position embeddings passed as `rope` (timm Eva) are sized to the patch tokens; the
prompts get the identity rotation (sin 0, cos 1), so they carry no position.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cegate_cli.errors import InputError
from cegate_cli.toolbox.base import BlockSite, ToolboxModule
from cegate_cli.toolbox.prompt import PromptOptions


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
        out = self.base_layer(x, **kwargs)
        if not self.active:
            return out
        return out + self.gate.to(out.dtype) * (self.prompted(x, kwargs) - out)

    def prompted(self, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        """Attention over the prompts and `x`, at `x`'s tokens only."""
        if kwargs.get("attn_mask") is not None:
            raise ValueError(f"prompt in block {self.layer}: the attention was given a mask of its own, which the prompts cannot extend")
        prefix, count = self.num_prefix_tokens, self.tokens
        prompts = self.prompts.to(x.dtype).expand(x.shape[0], -1, -1)
        sequence = torch.cat((x[:, :prefix], prompts, x[:, prefix:]), dim=1)
        out = self.base_layer(sequence, **with_prompt_positions(kwargs, count, patches=x.shape[1] - prefix))
        return torch.cat((out[:, :prefix], out[:, prefix + count :]), dim=1)

    def extra_repr(self) -> str:
        return f"tokens={self.tokens}, after {self.num_prefix_tokens} prefix token(s)"


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
