"""Refuse a raster whose storage blocks would each cost more memory than any read should.

GDAL reads a raster block by block (a tile, or a strip of rows) and inflates a compressed block
whole for any window that touches it. A file stored as one compressed strip therefore costs its
whole image in memory at every window read, however small the window and the file on disk.
The block sizes checked are the ones GDAL reports for the open dataset, so a file GDAL can read
row by row anyway (an uncompressed strip, which it splits into rows) passes; only what would
really be inflated whole is refused, with the command that rewrites the file tiled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Interleaving

from cegate_cli.errors import DataError
from cegate_cli.infra.capacity import MAX_BLOCK_BYTES, size_words


def largest_block(dataset: Any) -> tuple[int, int, int]:
    """(rows, columns, bytes) of the dataset's largest block as GDAL inflates it: a pixel-interleaved
    block holds every band, so it is inflated for all of them at once."""
    worst = (0, 0, 0)
    interleaved = dataset.interleaving == Interleaving.pixel
    for (rows, columns), dtype in zip(dataset.block_shapes, dataset.dtypes):
        size = int(rows) * int(columns) * np.dtype(dtype).itemsize * (dataset.count if interleaved else 1)
        if size > worst[2]:
            worst = (int(rows), int(columns), size)
    return worst


def check_blocks(dataset: Any, name: str | Path) -> None:
    """Refuse `dataset` (named `name` in the message) when a block is over MAX_BLOCK_BYTES inflated."""
    rows, columns, size = largest_block(dataset)
    if size <= MAX_BLOCK_BYTES:
        return
    if (rows, columns) == (dataset.height, dataset.width):
        stored = f"one block (a single strip) of {columns} x {rows} px, {size_words(size)} uncompressed; every read inflates it whole"
    else:
        kind = "strips" if columns == dataset.width else "tiles"
        stored = f"{kind} of {columns} x {rows} px, {size_words(size)} each uncompressed; every read inflates a whole one"
    file = Path(str(name)).name if not str(name).startswith("/vsi") else "in.tif"
    raise DataError(
        f"{name}: stored as {stored}, more than the {size_words(MAX_BLOCK_BYTES)} a block may take (MAX_BLOCK_BYTES); "
        f"rewrite it tiled: gdal_translate -co TILED=YES -co COMPRESS=DEFLATE {file} tiled.tif"
    )
