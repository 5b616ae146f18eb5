"""The spatial kind: LoRA on the query and value projections of each block's attention (layer.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cegate_cli.errors import InputError
from cegate_cli.toolbox.kinds import MAX_WIDTH, KindOptions, KindSpec, register_kind


@dataclass(frozen=True)
class LoRAOptions(KindOptions):
    rank: int = field(default=8, metadata={"help": "LoRA rank.", "flag": "--lora-rank"})
    alpha: float | None = field(
        default=None,
        metadata={
            "help": "The LoRA update is B @ A * (alpha / rank). None: twice the rank, made so when the options are "
            "made, so the update's scale stays 2 at any rank."
        },
    )

    def __post_init__(self) -> None:
        if self.alpha is None:
            object.__setattr__(self, "alpha", 2.0 * self.rank)

    def check(self) -> None:
        if self.rank < 1:
            raise InputError(f"--lora-rank {self.rank}: the LoRA rank must be at least 1 (e.g. 8)")
        if self.rank > MAX_WIDTH:
            raise InputError(f"--lora-rank {self.rank}: at most {MAX_WIDTH}; a rank above the backbone's embedding width adds memory and nothing else (e.g. 8)")
        assert self.alpha is not None  # made so in __post_init__
        if not math.isfinite(self.alpha):
            raise InputError(f"LoRA alpha {self.alpha}: must be a finite number")

    def check_width(self, width: int) -> None:
        """A rank above the embedding width would hold more parameters than the full-rank weight it adapts."""
        if self.rank > width:
            raise InputError(f"--lora-rank {self.rank}: at most the backbone's embedding width, {width} (e.g. 8)")


register_kind(
    KindSpec(
        name="lora",
        position=10,
        label="spatial (LoRA on q, v)",
        title="LoRA (spatial)",
        color="#1f77b4",
        options=LoRAOptions,
        attach=f"{__name__}.layer:attach",
        aliases=("spatial",),
    )
)
