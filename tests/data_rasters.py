"""Tiny GeoTIFF writers shared by the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

DEFAULT_TRANSFORM = from_origin(500000.0, 5000000.0, 10.0, 10.0)


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform=DEFAULT_TRANSFORM,
    nodata: float | None = None,
    descriptions: tuple[str, ...] | None = None,
) -> Path:
    """Write (H, W) or (C, H, W) `data` as a GeoTIFF and return its path."""
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = descriptions
    return path
