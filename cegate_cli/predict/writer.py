"""The mask GeoTIFF (and the optional confidence GeoTIFF) that `predict` leaves for GIS users.

What makes a mask open well in QGIS/ArcGIS: the input's exact grid (CRS, transform, size, GCPs),
uint8 with nodata 255, internal tiles and deflate compression, a colour table whose nodata
entry is transparent, class names in the tags, and overviews (nearest-class "mode" resampling, so
zoomed-out views still show real classes, not averages of ids).

Both files are written under temporary names and renamed only when complete, overviews
included: a crash or a failed scene leaves nothing under the final names.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from cegate_cli import __version__
from cegate_cli.atomic import atomic_path
from cegate_cli.classes import ClassTable

NODATA = 255
OVERVIEW_MIN_SIZE = 256


@dataclass(frozen=True)
class RasterGrid:
    """The pixel grid a mask must share with its scene."""

    width: int
    height: int
    crs: CRS | None
    transform: Affine
    gcps: tuple[list[Any], CRS | None] | None = None

    @classmethod
    def of(cls, dataset: rasterio.DatasetReader) -> RasterGrid:
        gcps, gcp_crs = dataset.gcps
        return cls(
            width=dataset.width,
            height=dataset.height,
            crs=dataset.crs,
            transform=dataset.transform,
            gcps=(gcps, gcp_crs) if gcps else None,
        )


def block_size_for(grid: RasterGrid) -> int:
    """512-pixel blocks for large scenes (fewer, better compressed blocks), 256 for small ones."""
    return 512 if max(grid.width, grid.height) >= 4096 else 256


def overview_factors(grid: RasterGrid) -> list[int]:
    """Factors 2, 4, 8, ... until the coarsest level fits in one 256-pixel tile (as gdaladdo does)."""
    side = max(grid.width, grid.height)
    factors = []
    factor = 2
    while side / (factor // 2) > OVERVIEW_MIN_SIZE:
        factors.append(factor)
        factor *= 2
    return factors


def _profile(grid: RasterGrid, block: int) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "uint8",
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "predictor": 2,
        "bigtiff": "if_safer",
    }
    if grid.crs is not None:
        profile["crs"] = grid.crs
    if grid.transform != Affine.identity() or grid.crs is not None:
        profile["transform"] = grid.transform
    return profile


def class_tags(class_table: ClassTable) -> dict[str, str]:
    """Tags that carry the class names: `CLASS_<id>=name` for people, one JSON tag for programs."""
    tags = {f"CLASS_{c.id}": c.name for c in class_table.classes}
    tags["CEGATE_CLASSES"] = json.dumps(class_table.to_dict())
    tags["CEGATE_NODATA"] = str(NODATA)
    tags["CEGATE_VERSION"] = __version__
    return tags


def color_table(class_table: ClassTable) -> dict[int, tuple[int, int, int, int]]:
    """Every byte value gets an entry (GDAL pads the table anyway); nodata is transparent black."""
    colors = {value: (0, 0, 0, 255) for value in range(256)}
    for c in class_table.classes:
        colors[c.id] = (*c.color, 255)
    colors[NODATA] = (0, 0, 0, 0)
    return colors


class MaskWriter:
    """Writes full-width strips of class ids (and confidence) into temporary GeoTIFFs.

    Use as a context manager; the files appear under their final names only on a clean exit.
    """

    def __init__(
        self,
        mask_path: Path,
        grid: RasterGrid,
        class_table: ClassTable,
        *,
        confidence_path: Path | None = None,
        source: Path | None = None,
    ):
        self.mask_path = Path(mask_path)
        self.confidence_path = Path(confidence_path) if confidence_path is not None else None
        self.grid = grid
        self.class_table = class_table
        self.source = source
        self.block = block_size_for(grid)
        self._stack = contextlib.ExitStack()
        self._mask: Any = None
        self._confidence: Any = None
        self._mask_tmp: Path | None = None
        self._confidence_tmp: Path | None = None

    @property
    def strip_rows(self) -> int:
        """Rows per write: one row of blocks."""
        return self.block

    def __enter__(self) -> MaskWriter:
        try:
            self._mask_tmp = self._stack.enter_context(atomic_path(self.mask_path))
            self._mask = self._open(self._mask_tmp)
            self._mask.write_colormap(1, color_table(self.class_table))
            self._mask.update_tags(**class_tags(self.class_table), **self._source_tags())
            self._mask.set_band_description(1, "class")
            if self.confidence_path is not None:
                self._confidence_tmp = self._stack.enter_context(atomic_path(self.confidence_path))
                self._confidence = self._open(self._confidence_tmp)
                self._confidence.update_tags(
                    CEGATE_CONFIDENCE="highest blended class probability, percent (0-100)", **self._source_tags()
                )
                self._confidence.set_band_description(1, "confidence (percent)")
        except BaseException:
            self._close_datasets()
            self._stack.close()
            raise
        return self

    def _open(self, path: Path) -> Any:
        with warnings.catch_warnings():  # a scene without georeference gives a mask without one
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path, "w", **_profile(self.grid, self.block))
        if self.grid.gcps is not None:
            dataset.gcps = self.grid.gcps
        return dataset

    def _source_tags(self) -> dict[str, str]:
        return {"CEGATE_SOURCE": self.source.name} if self.source is not None else {}

    def write_rows(self, row: int, ids: np.ndarray, confidence: np.ndarray | None = None) -> None:
        """Write class ids (rows, width) starting at `row`; strips should start on a block row."""
        window = Window(0, row, self.grid.width, ids.shape[0])
        self._mask.write(ids, 1, window=window)
        if self._confidence is not None and confidence is not None:
            self._confidence.write(confidence, 1, window=window)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._close_datasets()
            if exc_type is None:
                assert self._mask_tmp is not None
                _build_overviews(self._mask_tmp, self.grid, Resampling.mode)
                if self._confidence_tmp is not None:
                    _build_overviews(self._confidence_tmp, self.grid, Resampling.average)
        except BaseException as error:
            self._stack.__exit__(type(error), error, error.__traceback__)
            raise
        self._stack.__exit__(exc_type, exc, tb)

    def _close_datasets(self) -> None:
        for dataset in (self._mask, self._confidence):
            if dataset is not None and not dataset.closed:
                dataset.close()


def _build_overviews(path: Path, grid: RasterGrid, resampling: Resampling) -> None:
    """Internal overviews, compressed like the full-resolution data."""
    factors = overview_factors(grid)
    if not factors:
        return
    with rasterio.Env(COMPRESS_OVERVIEW="DEFLATE", PREDICTOR_OVERVIEW="2", GDAL_TIFF_OVR_BLOCKSIZE=str(block_size_for(grid))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path, "r+")
        with dataset:
            dataset.build_overviews(factors, resampling)
            dataset.update_tags(ns="rio_overview", resampling=resampling.name)
