"""Sizes of the toolbox modules; stored in run.json so a run rebuilds the same modules.

Outside the `toolbox` package (which loads torch) so the command line can show these defaults
in `--help` without loading the model stack, as `module_key` does for the modules' names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from cegate_cli.module_key import KINDS


MAX_WIDTH = 4096
"""Largest LoRA rank and module hidden size: above every ViT embedding width cegate loads."""


@dataclass(frozen=True)
class ToolboxConfig:
    kinds: tuple[str, ...] = KINDS
    lora_rank: int = 8
    lora_alpha: float | None = None
    """The LoRA update is B @ A * (alpha / rank). None: twice the rank, made so when the config is
    made, so the update's scale stays 2 at any rank; `dataclasses.replace` keeps a derived alpha,
    so pass `lora_alpha=None` with a new rank to derive it again."""
    adapter_hidden: int = 32
    adapter_scale: float = 1.0
    earth_hidden: int = 16
    earth_low_freq_ratio: float = 0.25
    earth_init: str = "identity"
    """Earth-Adapter initialisation (toolbox/frequency.py): "identity" (zero up projections, so
    the toolbox starts as an exact identity) or "kaiming" (the Earth-Adapter authors' init)."""

    def __post_init__(self) -> None:
        if self.lora_alpha is None:
            object.__setattr__(self, "lora_alpha", 2.0 * self.lora_rank)

    def check(self) -> None:
        """Reject sizes no module can be built with, before anything is written or loaded.

        `--lora-rank 0` used to end in a ZeroDivisionError (alpha / rank) and a negative rank in
        a torch error about tensor shapes.
        """
        from cegate_cli.errors import InputError

        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise InputError(f"--modules {','.join(self.kinds) or '(none)'}: choose from {', '.join(KINDS)} or all")
        if self.lora_rank < 1:
            raise InputError(f"--lora-rank {self.lora_rank}: the LoRA rank must be at least 1 (e.g. 8)")
        if self.lora_rank > MAX_WIDTH:
            raise InputError(
                f"--lora-rank {self.lora_rank}: at most {MAX_WIDTH}; a rank above the backbone's embedding width "
                "adds memory and nothing else (e.g. 8)"
            )
        for what, value in (("adapter hidden size", self.adapter_hidden), ("Earth-Adapter hidden size", self.earth_hidden)):
            if not 1 <= value <= MAX_WIDTH:
                raise InputError(f"{what} {value}: must be from 1 to {MAX_WIDTH}")
        for what, value in (("LoRA alpha", self.lora_alpha), ("adapter scale", self.adapter_scale)):
            if not math.isfinite(value):
                raise InputError(f"{what} {value}: must be a finite number")
        from cegate_cli.toolbox.frequency import EARTH_INITS

        if self.earth_init not in EARTH_INITS:
            raise InputError(f"Earth-Adapter init {self.earth_init!r}: choose {' or '.join(EARTH_INITS)}")
        if not 0 < self.earth_low_freq_ratio < 1:
            raise InputError(f"Earth-Adapter low-frequency ratio {self.earth_low_freq_ratio}: must lie strictly between 0 and 1")

    def check_width(self, width: int) -> None:
        """Reject a LoRA rank above the backbone's embedding width `width`: its update would hold
        more parameters than the full-rank weight it adapts, for nothing."""
        from cegate_cli.errors import InputError

        if self.lora_rank > width:
            raise InputError(f"--lora-rank {self.lora_rank}: at most the backbone's embedding width, {width} (e.g. 8)")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolboxConfig:
        """From run.json's "toolbox" section; a value of the wrong type is a FieldTypeError naming it."""
        from cegate_cli.record_fields import record_fields

        return cls(**record_fields(cls, data, section="toolbox"))
