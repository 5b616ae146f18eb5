"""The mask GeoTIFF (and the optional confidence and probability GeoTIFFs) `predict` leaves for GIS users.

What makes a mask open well in QGIS/ArcGIS: the input's exact grid (CRS, transform, size, GCPs),
uint8 with nodata 255, a Cloud Optimized GeoTIFF layout with mode overviews (cog.py), a colour
table whose nodata entry is transparent, and the class names where GIS software reads them:
GDAL category names, a raster attribute table and a QGIS style beside the mask (legend.py), and
tags inside it.

Strips are streamed into scratch GeoTIFFs; on a clean exit each is copied into its COG under a
temporary name, the legend sidecars are written, and only then are the rasters renamed into
place. A crash or a failed scene leaves nothing under the final names.
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
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from cegate_cli import __version__
from cegate_cli.data.classes import ClassTable
from cegate_cli.data.raster import open_raster
from cegate_cli.errors import CegateError
from cegate_cli.infra.atomic import atomic_path, scratch_path
from cegate_cli.predict.cog import Resampling, block_size_for, copy_as_cog, stream_profile
from cegate_cli.predict.legend import write_legend

NODATA = 255


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


def _profile(grid: RasterGrid, block: int, count: int) -> dict[str, Any]:
    profile: dict[str, Any] = {
        **stream_profile(block),
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": "uint8",
        "nodata": NODATA,
    }
    if count > 1:  # separate values, not colours: 3 or 4 byte bands would otherwise be read as RGB(A)
        profile["photometric"] = "MINISBLACK"
    if grid.crs is not None:
        profile["crs"] = grid.crs
    if grid.transform != Affine.identity() or grid.crs is not None:
        profile["transform"] = grid.transform
    return profile


RUN_TAG = "CEGATE_RUN"
"""The run_id of the run whose model made a raster: a batch resumed with another run's model must
not keep these maps as its own."""


def made_by_run(path: Path) -> str | None:
    """The run_id tagged on a raster cegate wrote; None when untagged (older cegate, another tool)
    or unreadable (the batch then reports why when it reads the file)."""
    try:
        with open_raster(path) as dataset:
            return dataset.tags().get(RUN_TAG)
    except CegateError:
        return None


def class_tags(class_table: ClassTable) -> dict[str, str]:
    """Tags that carry the class names: `CLASS_<id>=name` for people, one JSON tag for programs."""
    tags = {f"CLASS_{c.id}": c.name for c in class_table.classes}
    tags["CEGATE_CLASSES"] = json.dumps(class_table.to_dict())
    tags["CEGATE_NODATA"] = str(NODATA)
    tags["CEGATE_VERSION"] = __version__
    return tags


def color_table(class_table: ClassTable) -> dict[int, tuple[int, int, int, int]]:
    """The classes' colours and a transparent nodata entry, nothing else.

    A TIFF palette always holds 256 colours, so GDAL fills the other values with black; the
    legend sidecars (legend.py) are what list only the classes.
    """
    colors = {c.id: (*c.color, 255) for c in class_table.classes}
    colors[NODATA] = (0, 0, 0, 0)
    return colors


@dataclass
class _Output:
    """One raster being written: its final path, scratch file and open dataset, overview resampling."""

    final: Path
    resampling: Resampling
    scratch: Path | None = None
    staged: Path | None = None
    dataset: Any = None


class MaskWriter:
    """Writes full-width strips of class ids (and confidence, class probabilities) into GeoTIFFs.

    Use as a context manager; the files appear under their final names only on a clean exit.
    `probability_ids` are the class ids whose probabilities `probabilities_path` holds, one band
    each in that order.
    """

    def __init__(
        self,
        mask_path: Path,
        grid: RasterGrid,
        class_table: ClassTable,
        *,
        confidence_path: Path | None = None,
        probabilities_path: Path | None = None,
        probability_ids: tuple[int, ...] = (),
        source: Path | None = None,
        run_id: str | None = None,
    ):
        self.grid = grid
        self.class_table = class_table
        self.source = source
        self.run_id = run_id
        self.block = block_size_for(grid.width, grid.height)
        self.probability_ids = tuple(probability_ids) if probabilities_path is not None else ()
        if probabilities_path is not None and not self.probability_ids:
            raise ValueError("probabilities need at least one class id")
        self._mask = _Output(Path(mask_path), "mode")
        self._confidence = _Output(Path(confidence_path), "average") if confidence_path is not None else None
        self._probabilities = _Output(Path(probabilities_path), "average") if probabilities_path is not None else None
        self._stack = contextlib.ExitStack()

    @property
    def mask_path(self) -> Path:
        return self._mask.final

    @property
    def strip_rows(self) -> int:
        """Rows per write: one row of blocks."""
        return self.block

    def _outputs(self) -> list[_Output]:
        return [o for o in (self._mask, self._confidence, self._probabilities) if o is not None]

    def __enter__(self) -> MaskWriter:
        try:
            for output in self._outputs():  # the final temporaries, renamed in reverse order: the mask last
                output.staged = self._stack.enter_context(atomic_path(output.final))
            for output in self._outputs():
                output.scratch = self._stack.enter_context(scratch_path(output.final, ".stream.tif"))
            self._open_mask()
            self._open_confidence()
            self._open_probabilities()
        except BaseException:
            self._close_datasets()
            self._stack.close()
            raise
        return self

    def _open_mask(self) -> None:
        mask = self._mask.dataset = self._open(self._mask, 1)
        mask.write_colormap(1, color_table(self.class_table))
        mask.update_tags(**class_tags(self.class_table), **self._source_tags())
        mask.set_band_description(1, "class")

    def _open_confidence(self) -> None:
        if self._confidence is None:
            return
        confidence = self._confidence.dataset = self._open(self._confidence, 1)
        confidence.update_tags(CEGATE_CONFIDENCE="highest blended class probability, percent (0-100)", **self._source_tags())
        confidence.set_band_description(1, "confidence (percent)")

    def _open_probabilities(self) -> None:
        if self._probabilities is None:
            return
        probabilities = self._probabilities.dataset = self._open(self._probabilities, len(self.probability_ids))
        probabilities.update_tags(
            CEGATE_PROBABILITIES="blended class probability, percent (0-100), one band per class",
            CEGATE_CLASSES=json.dumps(self.class_table.to_dict()),
            **self._source_tags(),
        )
        for band, class_id in enumerate(self.probability_ids, start=1):
            probabilities.set_band_description(band, self.class_table.name_of(class_id))
            probabilities.update_tags(band, CLASS_ID=str(class_id))

    def _open(self, output: _Output, count: int) -> Any:
        with warnings.catch_warnings():  # a scene without georeference gives a mask without one
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(output.scratch, "w", **_profile(self.grid, self.block, count))
        if self.grid.gcps is not None:
            dataset.gcps = self.grid.gcps
        return dataset

    def _source_tags(self) -> dict[str, str]:
        tags = {"CEGATE_SOURCE": self.source.name} if self.source is not None else {}
        if self.run_id is not None:
            tags[RUN_TAG] = self.run_id
        return tags

    def write_rows(self, row: int, ids: np.ndarray, confidence: np.ndarray | None = None, probabilities: np.ndarray | None = None) -> None:
        """Write class ids (rows, width) starting at `row`, with the confidence (rows, width) and
        probabilities (bands, rows, width) of the same rows; strips should start on a block row."""
        window = Window(0, row, self.grid.width, ids.shape[0])
        self._mask.dataset.write(ids, 1, window=window)
        if self._confidence is not None and confidence is not None:
            self._confidence.dataset.write(confidence, 1, window=window)
        if self._probabilities is not None and probabilities is not None:
            self._probabilities.dataset.write(probabilities, window=window)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._close_datasets()
            if exc_type is None:
                for output in self._outputs():
                    assert output.scratch is not None and output.staged is not None
                    copy_as_cog(
                        output.scratch,
                        output.staged,
                        resampling=output.resampling,
                        block=self.block,
                        width=self.grid.width,
                        height=self.grid.height,
                    )
                write_legend(self._mask.final, self.class_table)
        except BaseException as error:
            self._stack.__exit__(type(error), error, error.__traceback__)
            raise
        self._stack.__exit__(exc_type, exc, tb)

    def _close_datasets(self) -> None:
        for output in self._outputs():
            if output.dataset is not None and not output.dataset.closed:
                output.dataset.close()
