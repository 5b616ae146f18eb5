"""Small pictures of a scene for the HTML report: its bands as RGB, a mask in class colours.

Scenes can be far larger than memory, so a preview is one decimated read (GDAL uses the file's
overviews where it has them) at the preview size, never the full raster. The input picture takes
the red, green and blue bands by name (bands.py), or the first three bands (one band: grey),
stretched between its 2nd and 98th percentile as GIS software shows imagery by default. Nodata
is transparent in every picture, so the page background shows where the scene has no data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from cegate_cli.data.bands import band_names_of
from cegate_cli.data.classes import ClassTable
from cegate_cli.data.gdal import gdal_detail
from cegate_cli.data.raster import open_raster
from cegate_cli.errors import DataError

RGB_NAMES = ("red", "green", "blue")


@dataclass(frozen=True)
class Picture:
    """An (h, w, 4) uint8 RGBA picture and what it shows."""

    pixels: np.ndarray
    caption: str
    shares: tuple[tuple[str, float], ...] = ()
    """For a mask: each class's share of the shown (not transparent) pixels, largest first."""


def preview_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(rows, columns) of a preview whose longer side is at most `size` pixels, aspect kept."""
    scale = max(width, height) / size
    if scale <= 1:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


def rgb_bands(path: Path) -> tuple[tuple[int, ...], str]:
    """The 1-based bands to show as RGB and how they were chosen (for the caption)."""
    names = band_names_of(path)
    if all(name in names for name in RGB_NAMES):
        return tuple(names.index(name) + 1 for name in RGB_NAMES), "red, green, blue"
    if len(names) >= 3:
        return (1, 2, 3), f"bands 1-3 ({', '.join(names[:3])}) as red, green, blue"
    return (1,), f"band 1 ({names[0]}) in grey"


def image_picture(path: Path, size: int) -> Picture:
    """The scene's bands as an RGB picture (see the module docstring)."""
    indexes, how = rgb_bands(path)
    with open_raster(path) as ds:
        shape = preview_shape(ds.width, ds.height, size)
        data = _read(ds, path, indexes, shape, Resampling.average)
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    values = np.ma.getdata(data).astype(np.float64)
    valid &= np.isfinite(values).all(axis=0)
    rgba = np.zeros((*shape, 4), dtype=np.uint8)
    for channel in range(3):
        band = values[min(channel, len(indexes) - 1)]
        rgba[..., channel] = _stretch(band, valid)
    rgba[..., 3] = np.where(valid, 255, 0)
    return Picture(rgba, f"input ({how}, 2-98% stretch)")


def _stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if not valid.any():
        return np.zeros(band.shape, dtype=np.uint8)
    low, high = np.percentile(band[valid], (2, 98))
    if not high > low:
        high = low + 1
    with np.errstate(invalid="ignore"):
        scaled = np.clip((band - low) / (high - low), 0, 1) * 255
    return np.nan_to_num(scaled).astype(np.uint8)


def mask_picture(path: Path, size: int, classes: ClassTable, caption: str, shape: tuple[int, int] | None = None) -> Picture:
    """A class mask in the class colours; its nodata and the ignore index are transparent.

    `shape` puts it on the same preview grid as the scene it belongs to.
    """
    with open_raster(path) as ds:
        if ds.count != 1:
            raise DataError(f"{path}: has {ds.count} bands; a mask has one band of class ids")
        shape = shape or preview_shape(ds.width, ds.height, size)
        data = _read(ds, path, (1,), shape, Resampling.nearest)  # class ids must never be averaged
    ids = np.ma.getdata(data)[0].astype(np.int64)
    hidden = np.ma.getmaskarray(data)[0] | (ids == classes.ignore_index) | (ids < 0) | (ids > 255)
    table = np.zeros((256, 4), dtype=np.uint8)
    table[:, :3] = 64  # a value outside the class table: dark grey, visible but not a class colour
    table[:, 3] = 255
    for info in classes.classes:
        table[info.id, :3] = info.color
    rgba = table[np.clip(ids, 0, 255)]
    rgba[hidden, 3] = 0
    shown = ids[~hidden]
    counts = np.bincount(shown, minlength=256) if shown.size else np.zeros(256, dtype=np.int64)
    shares = sorted(((classes.name_of(i), counts[i] / shown.size) for i in np.flatnonzero(counts)), key=lambda item: -item[1])
    return Picture(rgba, caption, tuple((name, float(share)) for name, share in shares))


def _read(ds, path: Path, indexes: tuple[int, ...], shape: tuple[int, int], resampling: Resampling) -> np.ma.MaskedArray:  # type: ignore[no-untyped-def]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NodataShadowWarning and friends: the picture is all we need
            return ds.read(list(indexes), out_shape=(len(indexes), *shape), resampling=resampling, masked=True)
    except RasterioError as exc:
        raise DataError(f"{path}: cannot read a preview ({gdal_detail(exc)}); the file may be truncated or corrupt") from exc
