"""The semantic kind: a bottleneck Adapter in parallel to each block's MLP (layer.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cegate_cli.errors import InputError
from cegate_cli.toolbox.kinds import MAX_WIDTH, KindOptions, KindSpec, register_kind


@dataclass(frozen=True)
class AdapterOptions(KindOptions):
    hidden: int = field(default=32, metadata={"help": "Width of the Adapter's bottleneck."})
    scale: float = field(default=1.0, metadata={"help": "Factor on the Adapter's output before it is added to the MLP's."})

    def check(self) -> None:
        if not 1 <= self.hidden <= MAX_WIDTH:
            raise InputError(f"adapter hidden size {self.hidden}: must be from 1 to {MAX_WIDTH}")
        if not math.isfinite(self.scale):
            raise InputError(f"adapter scale {self.scale}: must be a finite number")


register_kind(
    KindSpec(
        name="adapter",
        position=20,
        label="semantic (bottleneck Adapter on the MLP)",
        title="Adapter (semantic)",
        color="#e8710a",
        options=AdapterOptions,
        attach=f"{__name__}.layer:attach",
        aliases=("semantic",),
    )
)
