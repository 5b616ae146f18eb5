"""Learning-rate schedule: linear warm-up, then polynomial decay to zero (the usual for segmentation)."""

from __future__ import annotations


def lr_factor(step: int, total_steps: int, warmup_steps: int, power: float = 0.9) -> float:
    """Multiplier of the base learning rate for 0-based `step`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return (1.0 - progress) ** power
