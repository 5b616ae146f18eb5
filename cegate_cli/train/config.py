"""Everything that decides how a run trains; stored in run.json and checked on `--resume`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 500
    batch_size: int = 8
    crop: int = 224
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 25
    poly_power: float = 0.9
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.2
    val_every: int = 100
    val_crops: int = 16
    save_every: int = 50
    decoder: str = "unet"
    select: str = "0.25"
    reselect_every: int = 0
    fisher_samples: int = 16
    augment: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    def resume_fingerprint(self) -> dict[str, Any]:
        """Settings that must match for `--resume` to continue the same run (device may change)."""
        data = self.to_dict()
        data.pop("device")
        return data
