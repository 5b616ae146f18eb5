"""The layout of every raster `predict` writes: a Cloud Optimized GeoTIFF made by GDAL's COG driver.

A COG puts the image file directory first and the overviews before the full-resolution blocks,
smallest first, so a client reading over HTTP (QGIS, GDAL's /vsicurl/, a tile server) fetches
only the header and the blocks it shows. GDAL's validator (and rio-cogeo's) checks exactly that
layout. Adding overviews to a GeoTIFF in place appends them after the image, which breaks it
("offset of the main IFD should be < 300"), so the pixels are first streamed into a scratch
GeoTIFF with the same blocks, and the COG driver then copies them into the final layout in one
pass, overviews included. It copies the colour table, nodata, georeference (transform or GCPs),
band descriptions and default-domain tags along.

Overviews halve the size until the largest side fits in 256 pixels (as `gdaladdo` does), with
mode resampling for class ids (a zoomed-out view shows real classes, not averages of ids) and
average for percentages. A raster no larger than 256 pixels needs none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import rasterio.shutil

OVERVIEW_MIN_SIZE = 256
Resampling = Literal["mode", "average"]


def block_size_for(width: int, height: int) -> int:
    """512-pixel blocks for large scenes (fewer, better compressed blocks), 256 for small ones."""
    return 512 if max(width, height) >= 4096 else 256


def overview_count(width: int, height: int) -> int:
    """How many 2x levels until the coarsest one fits in 256 pixels: 0 for 256 or less, 2 for 791."""
    side, count = max(width, height), 0
    while side > OVERVIEW_MIN_SIZE:
        side = -(-side // 2)
        count += 1
    return count


def stream_profile(block: int) -> dict[str, object]:
    """Creation options of the scratch GeoTIFF the strips are streamed into.

    Same blocks as the final file, so the copy reads each block once; fast deflate, since it is
    read once and deleted.
    """
    return {
        "driver": "GTiff",
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "zlevel": 1,
        "bigtiff": "if_safer",
    }


def copy_as_cog(src: Path, dst: Path, *, resampling: Resampling, block: int, width: int, height: int) -> None:
    """Copy the streamed GeoTIFF `src` to `dst` as a COG (deflate + horizontal predictor)."""
    levels = overview_count(width, height)
    options: dict[str, object] = {
        "COMPRESS": "DEFLATE",
        "PREDICTOR": "YES",
        "BLOCKSIZE": block,
        "BIGTIFF": "IF_SAFER",
        "OVERVIEWS": "AUTO" if levels else "NONE",
    }
    if levels:
        options.update(OVERVIEW_COUNT=levels, OVERVIEW_RESAMPLING=resampling.upper())
    rasterio.shutil.copy(str(src), str(dst), driver="COG", **options)
