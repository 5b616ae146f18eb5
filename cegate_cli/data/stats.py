"""Per-band normalisation statistics, computed once on the training data and stored in the run.

`predict` must normalise exactly as training did, so the statistics travel in run.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BandStats:
    """Mean and standard deviation of each chosen band, in the raster's own units."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """(C, H, W) or (B, C, H, W) raw values -> float32 zero-mean unit-variance per band."""
        channel_axis = pixels.ndim - 3
        shape = [1] * pixels.ndim
        shape[channel_axis] = len(self.mean)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return (pixels.astype(np.float32) - mean) / std

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BandStats:
        return cls(tuple(data["names"]), tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))
