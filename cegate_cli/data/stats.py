"""Per-band normalisation statistics, computed once on the training data and stored in the run.

`predict` must normalise exactly as training did, so the statistics travel in run.json.
They are computed from sampled windows, never whole scenes, so a folder of huge rasters costs
no more than a few dozen tile reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from cegate_cli.data.raster import open_raster
from cegate_cli.data.raster_cache import RasterCache
from cegate_cli.data.windows import read_image_window
from cegate_cli.errors import DataError


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


# A constant band (a flat synthetic band, a saturated channel) has std 0; dividing by it would turn
# the slightest difference at predict time into a huge input. The floor is tiny next to any real
# band's spread (reflectance std is hundreds of units, or ~0.05 for 0-1 floats).
STD_FLOOR_ABS = 1e-3
STD_FLOOR_REL = 1e-2


def compute_band_stats(
    images: Sequence[Path],
    band_indexes_per_image: Sequence[tuple[int, ...]],
    names: Sequence[str],
    *,
    window: int = 256,
    max_windows: int = 64,
    seed: int = 0,
) -> BandStats:
    """Mean and std per band over valid pixels of up to `max_windows` sampled windows.

    Windows are drawn without replacement from a grid over all images, so large scenes weigh by
    their area and small data sets are covered exactly. Nodata and masked pixels are left out
    (the same rule as training crops). Each window's moments are merged with Chan's parallel
    update in float64, which stays accurate for large offsets such as 16-bit reflectance.
    """
    if len(images) != len(band_indexes_per_image):
        raise ValueError("one band index tuple per image is needed")
    if not images:
        raise DataError("no images to compute band statistics on")
    bands = len(names)
    grids: list[tuple[int, int]] = []  # (windows across, windows down) per image
    for path in images:
        with open_raster(Path(path)) as ds:
            grids.append((math.ceil(ds.width / window), math.ceil(ds.height / window)))
    per_image = np.array([a * d for a, d in grids], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(per_image)])
    total = int(starts[-1])
    order = np.random.default_rng(seed).permutation(total)
    budget = max(1, max_windows)
    count = np.zeros(bands, dtype=np.float64)
    mean = np.zeros(bands, dtype=np.float64)
    m2 = np.zeros(bands, dtype=np.float64)
    used = 0
    # Windows that turn out all nodata do not count, but at most 4x the budget is read in total.
    with RasterCache(max_open=8) as cache:
        for flat in order[: 4 * budget]:
            if used >= budget:
                break
            k = int(np.searchsorted(starts, flat, side="right") - 1)
            across, _ = grids[k]
            cell = int(flat - starts[k])
            ds = cache.image(Path(images[k]))
            indexes = band_indexes_per_image[k]
            if len(indexes) != bands:
                raise ValueError(f"{images[k]}: {len(indexes)} band indexes for {bands} band names")
            col, row = (cell % across) * window, (cell // across) * window
            win = Window(col, row, min(window, ds.width - col), min(window, ds.height - row))
            pixels, valid = read_image_window(ds, indexes, win)
            n = int(valid.sum())
            if n == 0:
                continue
            values = pixels[:, valid].astype(np.float64)
            w_mean = values.mean(axis=1)
            w_m2 = ((values - w_mean[:, None]) ** 2).sum(axis=1)
            delta = w_mean - mean
            new_count = count + n
            mean = mean + delta * (n / new_count)
            m2 = m2 + w_m2 + delta**2 * (count * n / new_count)
            count = new_count
            used += 1
    if used == 0:
        raise DataError(
            f"no valid pixels in {min(total, 4 * budget)} sampled windows of {len(images)} image(s) (first: {images[0]}); are the images all nodata?"
        )
    std = np.sqrt(m2 / count)
    floor = np.maximum(STD_FLOOR_ABS, STD_FLOOR_REL * np.abs(mean))
    std = np.where(std < floor, floor, std)
    return BandStats(tuple(str(n) for n in names), tuple(float(v) for v in mean), tuple(float(v) for v in std))
