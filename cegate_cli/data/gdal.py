"""The one call that opens a raster for reading, below everything that checks what it opened.

data/raster.py owns opening input rasters (the file checks, the messages, the valid-pixel rule);
a STAC item (data/stac.py) is opened by raster.py and has to open its asset files and its
in-memory VRT itself. Both come here, so there is one `rasterio.open` for reading in cegate and
one way the GDAL reason of a failure reaches the user.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import rasterio
from rasterio.errors import NotGeoreferencedWarning


def quiet_open(source: str | os.PathLike[str]) -> Any:
    """rasterio.open (read mode) without its NotGeoreferencedWarning reaching the user's terminal.

    A file without a CRS or transform is fine for most of cegate; where it matters (predicting
    a scene, pairing a mask, vectorising) cegate says so in its own words, once per file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(source)


def gdal_detail(exc: BaseException) -> str:
    """rasterio's read errors say "see previous exception"; the GDAL reason is in the cause."""
    cause = exc.__cause__
    return f"{exc} {cause}" if cause is not None and str(cause) not in str(exc) else str(exc)
