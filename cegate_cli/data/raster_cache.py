"""Open datasets kept per process for reads that return to the same files again and again.

Training crops and band statistics read many small windows from a few scenes; opening each file
once per window would cost more than the read. A mask on another grid than its image is kept as
a warped view of it (nearest neighbour, so class ids are never blended). Opening is
data/raster.py's `open_raster`, so cached files are checked and refused like any other.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from cegate_cli.data.raster import mask_nodata, open_raster


@dataclass(frozen=True)
class MaskSource:
    """How to read one mask: the file, whether it is warped onto its image's grid, its nodata value."""

    path: Path
    warp_to: Path | None = None
    nodata_value: int | None = None


class _WarpedMask:
    """A warped view of a mask together with the handles it reads from, closed as one."""

    def __init__(self, source: MaskSource) -> None:
        assert source.warp_to is not None
        self._raw = open_raster(source.path)
        try:
            with open_raster(source.warp_to) as image:
                self.vrt = warped_mask(self._raw, image)
        except BaseException:
            self._raw.close()
            raise

    def close(self) -> None:
        self.vrt.close()
        self._raw.close()


class RasterCache:
    """Open datasets kept per process, opened on first use, at most `max_open` at a time.

    GDAL handles must not cross a fork, so a cache that finds itself in another process (a
    DataLoader worker) starts empty; pickling drops the handles for the same reason.
    Not thread-safe: rasterio datasets are not.
    """

    def __init__(self, max_open: int = 64) -> None:
        self.max_open = max_open
        self._open: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._pid = os.getpid()

    def image(self, path: Path) -> Any:
        return self._get(("image", str(path)), lambda: open_raster(path))

    def mask(self, source: MaskSource) -> Any:
        """An open dataset (or warped view) to read `source` on its image's grid."""
        if source.warp_to is None:
            return self._get(("mask", str(source.path)), lambda: open_raster(source.path))
        return self._get(("warped", str(source.path)), lambda: _WarpedMask(source)).vrt

    def _get(self, key: tuple[str, str], opener: Any) -> Any:
        if self._pid != os.getpid():
            self._open = OrderedDict()  # inherited handles belong to the parent; never close them here
            self._pid = os.getpid()
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        handle = opener()
        self._open[key] = handle
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return handle

    def close(self) -> None:
        """Close every handle; the cache stays usable and reopens on the next read."""
        while self._open:
            self._open.popitem(last=False)[1].close()

    def __enter__(self) -> RasterCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_open"])  # type: ignore[misc]


def warped_mask(mask_ds: Any, image_ds: Any) -> WarpedVRT:
    """The mask as seen on the image's grid: nearest neighbour, so class ids are never blended."""
    dtype = np.dtype(mask_ds.dtypes[0])
    nodata = mask_nodata(mask_ds)  # the same reading of the mask's nodata as read_mask_window's
    fill = nodata if nodata is not None else np.iinfo(dtype).max
    return WarpedVRT(
        mask_ds,
        crs=image_ds.crs,
        transform=image_ds.transform,
        width=image_ds.width,
        height=image_ds.height,
        resampling=Resampling.nearest,
        nodata=fill,
    )
