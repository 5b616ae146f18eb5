"""Sizes of the toolbox modules; stored in run.json so a run rebuilds the same modules."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cegate_cli.toolbox.base import KINDS


@dataclass(frozen=True)
class ToolboxConfig:
    kinds: tuple[str, ...] = KINDS
    lora_rank: int = 8
    lora_alpha: float = 16.0
    adapter_hidden: int = 32
    adapter_scale: float = 1.0
    earth_hidden: int = 16
    earth_low_freq_ratio: float = 0.25

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolboxConfig:
        values = dict(data)
        values["kinds"] = tuple(values.get("kinds", KINDS))
        return cls(**values)
