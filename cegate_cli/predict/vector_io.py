"""Streaming polygon outputs: GeoJSON (RFC 7946) and GeoPackage, both written atomically.

Polygons arrive in batches (one per chunk of the mask) and are written at once, so a huge
scene never needs all its features in memory.

GeoJSON follows RFC 7946: EPSG:4326 longitude/latitude with no `crs` member, exterior rings
counter-clockwise and holes clockwise (right-hand rule), coordinates rounded to 1e-7 degrees
(about 1 cm). GeoJSON is written by hand, one feature per line, because GDAL's GeoJSON driver
cannot append to a file. GeoPackage keeps the mask's own CRS and is appended to with pyogrio.

GeoPackage files are created as version 1.2 (`GPKG_VERSION`). Recent GDAL (3.12, in pyogrio's
wheels) writes 1.4 by default, which GDAL 3.6 (QGIS 3.22, Debian 12) opens with the warning
"user_version ... may only be partially supported"; 1.2 and 1.3 both open there without a word
(checked with Debian's ogrinfo 3.6.2), and 1.2 is the one older readers know as well. Nothing
cegate writes needs 1.3 or 1.4.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from rasterio.crs import CRS

from cegate_cli.infra.atomic import atomic_path

GEOJSON_DECIMALS = 7
GPKG_VERSION = "1.2"


@dataclass(frozen=True)
class FeatureBatch:
    """Polygons in the sink's CRS plus their attributes, all arrays of equal length."""

    geometries: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    areas_m2: np.ndarray

    def __len__(self) -> int:
        return len(self.geometries)


class FeatureSink(Protocol):
    """A polygon writer, made as `Sink(path, crs)` (crs: the mask's) and used as a context manager
    that writes batches and gives the file its final name only on a clean exit."""

    def __enter__(self) -> FeatureSink: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None: ...

    def write(self, batch: FeatureBatch) -> None: ...


class GeoJSONSink:
    """RFC 7946 FeatureCollection; geometries must already be in EPSG:4326 (lon, lat), so the
    mask's `crs` every sink is made with is not needed here."""

    def __init__(self, path: Path, crs: CRS | None = None):
        self.path = Path(path)
        self._stack = contextlib.ExitStack()
        self._handle: IO[str] | None = None
        self._first = True

    def __enter__(self) -> GeoJSONSink:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._handle = self._stack.enter_context(open(tmp, "w", encoding="utf-8"))
        self._handle.write('{"type": "FeatureCollection", "features": [\n')
        return self

    def write(self, batch: FeatureBatch) -> None:
        assert self._handle is not None
        if not len(batch):
            return
        oriented = shapely.orient_polygons(batch.geometries, exterior_cw=False)
        rounded = shapely.transform(oriented, lambda coords: np.round(coords, GEOJSON_DECIMALS))
        for geometry, class_id, name, area in zip(
            shapely.to_geojson(rounded), batch.class_ids, batch.class_names, batch.areas_m2
        ):
            properties = json.dumps({"class_id": int(class_id), "class_name": name, "area_m2": round(float(area), 2)})
            separator = "" if self._first else ",\n"
            self._handle.write(f'{separator}{{"type": "Feature", "properties": {properties}, "geometry": {geometry}}}')
            self._first = False

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None and self._handle is not None:
            self._handle.write("\n]}\n")
        self._stack.__exit__(exc_type, exc, tb)


class GeoPackageSink:
    """One polygon layer named after the file, in the mask's CRS."""

    def __init__(self, path: Path, crs: CRS):
        self.path = Path(path)
        self.crs = crs.to_wkt()
        self.layer = self.path.stem
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._created = False

    def __enter__(self) -> GeoPackageSink:
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def write(self, batch: FeatureBatch) -> None:
        if not len(batch) and self._created:
            return
        frame = gpd.GeoDataFrame(
            {
                "class_id": pd.Series(batch.class_ids, dtype="int32"),
                "class_name": pd.Series(batch.class_names, dtype="object"),
                "area_m2": pd.Series(batch.areas_m2, dtype="float64"),
            },
            geometry=gpd.GeoSeries(batch.geometries, crs=self.crs),
            crs=self.crs,
        )
        pyogrio.write_dataframe(
            frame, self._tmp, layer=self.layer, driver="GPKG", geometry_type="Polygon", append=self._created,
            dataset_options=None if self._created else {"VERSION": GPKG_VERSION},
        )
        self._created = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None and not self._created:
            self.write(FeatureBatch(np.array([], dtype=object), np.array([], dtype=np.int32), [], np.array([])))
        self._stack.__exit__(exc_type, exc, tb)
