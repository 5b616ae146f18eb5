"""An AdamW that holds only what is trained now, and keeps its moments across reselection.

When the selection changes, the optimizer is rebuilt over the new trainable set; parameters
that stay selected keep their Adam state, newly selected ones start fresh, and deselected ones
leave the optimizer (they are bypassed and take no memory for moments).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def build_adamw(
    named: dict[str, nn.Parameter], lr: float, weight_decay: float, previous: torch.optim.AdamW | None = None, previous_names: list[str] | None = None
) -> torch.optim.AdamW:
    """AdamW over `named` (stable names), with no weight decay on biases, norms and scales."""
    decay = [p for name, p in named.items() if p.ndim >= 2]
    no_decay = [p for name, p in named.items() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    if previous is not None and previous_names is not None:
        old_by_name = dict(zip(previous_names, _ordered_params(previous)))
        for name, parameter in named.items():
            old = old_by_name.get(name)
            if old is not None and old in previous.state:
                optimizer.state[parameter] = previous.state[old]
    return optimizer


def ordered_names(named: dict[str, nn.Parameter]) -> list[str]:
    """Names in the order `build_adamw` puts parameters into its groups (needed to save/restore)."""
    return [name for name, p in named.items() if p.ndim >= 2] + [name for name, p in named.items() if p.ndim < 2]


def _ordered_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def optimizer_state_by_name(optimizer: torch.optim.Optimizer, names: list[str]) -> dict[str, Any]:
    """Adam moments keyed by parameter name, so a resumed run can rebuild any trainable set."""
    return {name: optimizer.state[p] for name, p in zip(names, _ordered_params(optimizer)) if p in optimizer.state}


def restore_optimizer_state(optimizer: torch.optim.Optimizer, names: list[str], state: dict[str, Any]) -> None:
    for name, parameter in zip(names, _ordered_params(optimizer)):
        if name in state:
            optimizer.state[parameter] = {
                key: (value.to(parameter.device) if torch.is_tensor(value) and key != "step" else value) for key, value in state[name].items()
            }
