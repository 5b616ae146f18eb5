"""Streaming polygon outputs: GeoJSON (RFC 7946) and GeoPackage, both written atomically.

Polygons arrive in batches (one per chunk of the mask) and are written at once, so a huge
scene never needs all its features in memory.

GeoJSON follows RFC 7946: EPSG:4326 longitude/latitude with no `crs` member, exterior rings
counter-clockwise and holes clockwise (right-hand rule), coordinates rounded to 1e-7 degrees
(about 1 cm). GeoJSON is written by hand, one feature per line, because GDAL's GeoJSON driver
cannot append to a file. GeoPackage keeps the mask's own CRS and is appended to with pyogrio.

A batch's merged layer (vector_merge.py) passes each scene's stem with its batches, which both
sinks write as a `scene` attribute; `read_features` reads either format back for it.

A GeoPackage made with a style also holds it in QGIS's `layer_styles` table, created through GDAL
as QGIS itself creates it (an attribute table registered in gpkg_contents, FID column `id`), with
one row marked as the layer's default. QGIS reads that row whenever it opens the layer, so the
colours travel with the file; the file then lists two tables, so read the polygons by their
layer name (`gpd.read_file(path, layer=path.stem)`) to spare pyogrio's "more than one layer" note.

GeoPackage files are created as version 1.2 (`GPKG_VERSION`). Recent GDAL (3.12, in pyogrio's
wheels) writes 1.4 by default, which GDAL 3.6 (QGIS 3.22, Debian 12) opens with the warning
"user_version ... may only be partially supported"; 1.2 and 1.3 both open there without a word
(checked with Debian's ogrinfo 3.6.2), and 1.2 is the one older readers know as well. Nothing
cegate writes needs 1.3 or 1.4.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from cegate_cli.errors import DataError
from cegate_cli.infra.atomic import atomic_path

GEOJSON_DECIMALS = 7
GPKG_VERSION = "1.2"
READ_ROWS = 50_000
"""Polygons read back per batch (`read_features`): memory holds one batch, not a whole scene's."""
ATTRIBUTES = ("class_id", "class_name", "area_m2")


@dataclass(frozen=True)
class FeatureBatch:
    """Polygons in the sink's CRS plus their attributes, all arrays of equal length."""

    geometries: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    areas_m2: np.ndarray
    scene: str | None = None
    """The scene these polygons come from, written as a `scene` attribute (the merged layer's);
    None: no such attribute (a scene's own file)."""

    def __len__(self) -> int:
        return len(self.geometries)

    @classmethod
    def empty(cls, scene: str | None = None) -> FeatureBatch:
        return cls(np.array([], dtype=object), np.array([], dtype=np.int32), [], np.array([]), scene)


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
        for geometry, class_id, name, area in zip(shapely.to_geojson(rounded), batch.class_ids, batch.class_names, batch.areas_m2):
            scene = {} if batch.scene is None else {"scene": batch.scene}
            properties = json.dumps({**scene, "class_id": int(class_id), "class_name": name, "area_m2": round(float(area), 2)})
            separator = "" if self._first else ",\n"
            self._handle.write(f'{separator}{{"type": "Feature", "properties": {properties}, "geometry": {geometry}}}')
            self._first = False

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None and self._handle is not None:
            self._handle.write("\n]}\n")
        self._stack.__exit__(exc_type, exc, tb)


class GeoPackageSink:
    """One polygon layer named after the file, in the mask's CRS, with `style` (QML) stored for
    QGIS when given."""

    def __init__(self, path: Path, crs: CRS | ProjCRS, style: str | None = None):
        self.path = Path(path)
        self.crs = crs.to_wkt()
        self.layer = self.path.stem
        self.style = style
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._created = False

    def __enter__(self) -> GeoPackageSink:
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def write(self, batch: FeatureBatch) -> None:
        if not len(batch) and self._created:
            return
        scene = {} if batch.scene is None else {"scene": pd.Series([batch.scene] * len(batch), dtype="object")}
        frame = gpd.GeoDataFrame(
            {
                **scene,
                "class_id": pd.Series(batch.class_ids, dtype="int32"),
                "class_name": pd.Series(batch.class_names, dtype="object"),
                "area_m2": pd.Series(batch.areas_m2, dtype="float64"),
            },
            geometry=gpd.GeoSeries(batch.geometries, crs=self.crs),
            crs=self.crs,
        )
        pyogrio.write_dataframe(
            frame,
            self._tmp,
            layer=self.layer,
            driver="GPKG",
            geometry_type="Polygon",
            append=self._created,
            dataset_options=None if self._created else {"VERSION": GPKG_VERSION},
        )
        self._created = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                if not self._created:
                    self.write(FeatureBatch.empty())
                if self.style is not None:
                    assert self._tmp is not None
                    embed_style(self._tmp, self.layer, self.style)
            except BaseException as error:  # the temporary is removed, the final name never taken
                self._stack.__exit__(type(error), error, error.__traceback__)
                raise
        self._stack.__exit__(exc_type, exc, tb)


def embed_style(gpkg: Path, layer: str, qml: str) -> None:
    """Store `qml` in the GeoPackage's `layer_styles` table as `layer`'s default style.

    The row is what QGIS writes with "Save as default" (QgsOgrProviderMetadata.saveStyle): empty
    catalog and schema, the layer's name and geometry column, `useAsDefault` set; QGIS loads it
    by those when it opens the layer.
    """
    geometry_column = pyogrio.read_info(gpkg, layer=layer)["geometry_name"]
    row = pd.DataFrame(
        {
            "f_table_catalog": [""],
            "f_table_schema": [""],
            "f_table_name": [layer],
            "f_geometry_column": [geometry_column],
            "styleName": [layer],
            "styleQML": [qml],
            "styleSLD": [""],
            "useAsDefault": pd.Series([True], dtype="bool"),
            "description": ["cegate classes: the mask's names and colours"],
            "owner": [""],
            "ui": pd.Series([None], dtype="object"),
            "update_time": pd.Series([pd.Timestamp.now(tz="UTC")]),
        }
    )
    pyogrio.write_dataframe(row, gpkg, layer="layer_styles", driver="GPKG", layer_options={"FID": "id"})


def read_features(path: Path, rows: int = READ_ROWS) -> tuple[ProjCRS | None, Iterator[FeatureBatch]]:
    """A polygon file's CRS and its polygons, `rows` at a time, with class_id, class_name, area_m2.

    Reads the file's first layer with geometries (a GeoPackage's `layer_styles` has none). A file
    with polygons but without those attributes is refused: it is not one cegate wrote.
    """
    path = Path(path)
    try:
        layers = [name for name, kind in pyogrio.list_layers(path) if kind is not None]
        if not layers:
            raise DataError(f"{path}: holds no polygon layer")
        info = pyogrio.read_info(path, layer=layers[0])
    except pyogrio.errors.DataSourceError as exc:
        raise DataError(f"{path}: cannot be read as polygons ({exc})") from exc
    missing = [name for name in ATTRIBUTES if name not in list(info["fields"])]
    if missing and info["features"]:  # an empty GeoJSON has no attributes at all
        raise DataError(f"{path}: has no {', '.join(missing)} attribute; it is not a polygon file predict wrote")
    crs = ProjCRS.from_user_input(info["crs"]) if info["crs"] else None
    return crs, _batches(path, layers[0], int(info["features"]), rows)


def _batches(path: Path, layer: str, count: int, rows: int) -> Iterator[FeatureBatch]:
    for start in range(0, count, rows):
        frame = pyogrio.read_dataframe(path, layer=layer, columns=list(ATTRIBUTES), skip_features=start, max_features=rows)
        yield FeatureBatch(
            np.asarray(frame.geometry.values, dtype=object),
            frame["class_id"].to_numpy(dtype=np.int32),
            [str(name) for name in frame["class_name"]],
            frame["area_m2"].to_numpy(dtype=np.float64),
        )
