"""Windowed reads of input rasters: pixels with their valid-pixel mask, and class labels.

Scenes can be far larger than memory, so nothing reads a whole raster: callers ask for windows.
Pixels always come with data/raster.py's valid-pixel mask, and a read that fails (a truncated
or corrupt file shows up only when its block is read) is one DataError naming the file and the
place, whoever reads: training crops, band statistics, the image checks or predict.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from cegate_cli.data.gdal import gdal_detail
from cegate_cli.data.raster import PixelValidity
from cegate_cli.errors import DataError


def iter_windows(width: int, height: int, size: int) -> Iterator[Window]:
    """Non-overlapping windows of at most size x size covering the raster, row by row."""
    for row in range(0, height, size):
        for col in range(0, width, size):
            yield Window(col, row, min(size, width - col), min(size, height - row))


def read_pixels(
    ds: Any, indexes: Sequence[int], window: Window, *, validity: PixelValidity | None = None, name: object = None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels (C, h, w) of bands `indexes` in the file's data type, and their valid-pixel mask (h, w) bool.

    A caller reading one dataset many times passes `validity` (`PixelValidity(ds, indexes)`,
    planned once) so the rule is not re-derived for every tile. `name` is the file an error
    names (default: the dataset's; a STAC item's is its in-memory VRT, so predict passes the item).
    """
    try:
        validity = validity if validity is not None else PixelValidity(ds, indexes)
        raw = ds.read(list(indexes), window=window)
        return raw, validity.of(ds, raw, window)
    except RasterioError as exc:
        where = ds.name if name is None else name
        raise DataError(
            f"{where}: reading pixels at column {int(window.col_off)}, row {int(window.row_off)} failed ({gdal_detail(exc)}); "
            "the file may be truncated or corrupt"
        ) from exc


def read_image_window(ds: Any, indexes: Sequence[int], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels (C, h, w) float32 and the valid-pixel mask (h, w) bool of one window."""
    raw, valid = read_pixels(ds, indexes, window)
    with np.errstate(over="ignore", invalid="ignore"):
        return raw.astype(np.float32, copy=False), valid


def read_mask_window(ds: Any, window: Window, *, nodata_value: int | None, ignore_index: int) -> np.ndarray:
    """Labels (h, w) int64 of one window; the mask's nodata and pixels outside it become ignore_index.

    A read that fails (a truncated or corrupt mask) is a DataError naming the file and the place.
    """
    try:
        labels = ds.read(1, window=window).astype(np.int64)
        if nodata_value is not None:
            labels[labels == nodata_value] = ignore_index
        if isinstance(ds, WarpedVRT):
            labels[ds.read_masks(1, window=window) == 0] = ignore_index
    except RasterioError as exc:
        raise DataError(
            f"{ds.name}: reading mask values at column {int(window.col_off)}, row {int(window.row_off)} failed ({gdal_detail(exc)}); "
            "the file may be truncated or corrupt"
        ) from exc
    return labels
