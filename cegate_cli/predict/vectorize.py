"""Polygons from a class mask, chunk by chunk, with regions cut at chunk seams stitched back.

The mask is read in full-width strips of whole block rows. In each strip, small regions are
merged into their neighbours (GDAL's sieve, with a pixel count derived from `min_area_m2` at
that strip's latitude) and the rest is polygonised in pixel coordinates, where every vertex is
an exact integer. A polygon that does not touch the strip's top or bottom seam is complete and
written at once. Polygons that do are kept as pieces of open regions: a piece below a seam
joins a region above it when both have the same class and share a stretch of the seam line
(4-connectivity, as in the polygoniser). A region is written, as the union of its pieces, as
soon as no piece touches the next seam. So memory holds one strip plus the regions crossing it.

Sieving near a seam sees `SIEVE_HALO` extra rows on each side, which makes it exact for regions
up to that many pixels tall; longer thin regions cut by a seam may be sieved slightly
differently on each side. After stitching, regions still below `min_area_m2` (e.g. specks
surrounded only by nodata, which the sieve cannot merge anywhere) are dropped.

Simplification (`simplify_m`) treats each written batch as a coverage, so polygons that share
an edge keep sharing it exactly (no slivers, no overlaps). Edges between polygons written in
different batches are left unsimplified for the same reason; they are few (only along regions
that cross a seam).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.features import shapes, sieve
from rasterio.windows import Window

from cegate_cli.data.classes import ClassTable
from cegate_cli.data.gdal import gdal_detail
from cegate_cli.data.raster import mask_nodata, open_raster
from cegate_cli.errors import DataError, InputError
from cegate_cli.predict.geodesy import GroundScale, pixels_to_crs
from cegate_cli.predict.legend import polygon_qml, write_polygon_style
from cegate_cli.predict.outputs import vector_format, vector_format_names
from cegate_cli.predict.vector_io import FeatureBatch, FeatureSink

SIEVE_HALO = 256
DEFAULT_CHUNK_ROWS = 1024


@dataclass(frozen=True)
class VectorResult:
    """What a vectorisation wrote; counts and areas are per class id."""

    path: Path
    fmt: str
    features: int
    class_features: dict[int, int]
    class_area_m2: dict[int, float]
    seconds: float
    warnings: tuple[str, ...] = ()


@dataclass
class _Region:
    """An open region: its pieces (pixel coordinates) and where it touches the current seam."""

    class_id: int
    pieces: list[shapely.Polygon]
    seam: list[tuple[float, float]] = field(default_factory=list)


def vectorize_mask(
    mask_path: Path,
    out_path: Path,
    *,
    class_table: ClassTable,
    fmt: str = "geojson",
    min_area_m2: float = 0.0,
    simplify_m: float = 0.0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> VectorResult:
    """Write the mask's class regions as polygons with class_id, class_name and area_m2, and their
    QGIS style (`<name>.qml`, the mask's colours) beside them.

    `fmt` names a format of predict/outputs.py: GeoJSON is in EPSG:4326 (RFC 7946), GeoPackage in
    the mask's own CRS. Regions smaller than `min_area_m2` are merged into their neighbours first;
    `simplify_m` is a tolerance in metres.
    """
    mask_path, out_path = Path(mask_path), Path(out_path)
    try:
        form = vector_format(fmt)
    except KeyError:
        raise InputError(f"vector format {fmt!r} is not supported; use {' or '.join(map(repr, vector_format_names()))}") from None
    if min_area_m2 < 0 or simplify_m < 0:
        raise InputError(f"min_area_m2 ({min_area_m2}) and simplify_m ({simplify_m}) must not be negative")
    started = time.perf_counter()
    with open_raster(mask_path) as dataset:  # a mask without CRS is reported below, not as a Python warning
        if dataset.crs is None:
            raise DataError(
                f"{mask_path}: has no CRS, and polygons need one to mean anything on a map; "
                "assign the scene's CRS first (e.g. gdal_edit.py -a_srs EPSG:32633 scene.tif) and predict again, "
                "or use the mask raster itself"
            )
        scale = GroundScale.of(dataset.crs, dataset.transform)
        if form.lonlat and not scale.geodetic:
            others = [other.name for other in map(vector_format, vector_format_names()) if not other.lonlat]
            raise DataError(f"{mask_path}: its CRS cannot be converted to longitude/latitude, which {form.label} requires; use {' or '.join(others)}")
        warnings = () if scale.geodetic else (f"{mask_path.name}: CRS not tied to the Earth; areas are planar",)
        nodata = mask_nodata(dataset)  # a nodata value the mask cannot hold marks nothing (data/raster.py)
        nodata = class_table.ignore_index if nodata is None else nodata
        block_rows = dataset.block_shapes[0][0]
        chunk = max(block_rows, -(-chunk_rows // block_rows) * block_rows)
        sink: FeatureSink = form.open_sink(out_path, dataset.crs, style=polygon_qml(class_table))
        stitcher = _Stitcher(dataset.height)
        features: dict[int, int] = {}
        areas: dict[int, float] = {}
        with sink:
            for y0 in range(0, dataset.height, chunk):
                y1 = min(dataset.height, y0 + chunk)
                min_pixels = 0
                if min_area_m2 > 0:
                    min_pixels = math.ceil(min_area_m2 / scale.pixel_area_m2((y0 + y1) / 2, dataset.width / 2))
                strip = _read_sieved(dataset, mask_path, y0, y1, nodata, min_pixels)
                complete = stitcher.add_strip(_polygons(strip, nodata, y0), y0, y1)
                batch = _finish(complete, scale, class_table, min_area_m2, simplify_m, y0, dataset.width, form.lonlat)
                sink.write(batch)
                for class_id, area in zip(batch.class_ids, batch.areas_m2):
                    features[int(class_id)] = features.get(int(class_id), 0) + 1
                    areas[int(class_id)] = areas.get(int(class_id), 0.0) + float(area)
            if stitcher.open_regions:
                raise RuntimeError("internal error: regions left open after the last strip")
            write_polygon_style(out_path, class_table)  # before the polygons take their name, like the mask's legend
    return VectorResult(
        path=out_path,
        fmt=fmt,
        features=sum(features.values()),
        class_features=dict(sorted(features.items())),
        class_area_m2=dict(sorted(areas.items())),
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )


def _read_sieved(dataset: rasterio.DatasetReader, path: Path, y0: int, y1: int, nodata: int, min_pixels: int) -> np.ndarray:
    """Rows [y0, y1) of band 1, sieved with `SIEVE_HALO` context rows on both sides."""
    halo = min(SIEVE_HALO, max(min_pixels - 1, 0))
    top, bottom = max(0, y0 - halo), min(dataset.height, y1 + halo)
    try:
        values = dataset.read(1, window=Window(0, top, dataset.width, bottom - top))
    except RasterioError as exc:
        raise DataError(f"{path}: reading rows {top}-{bottom} failed ({gdal_detail(exc)}); the mask may be corrupt") from exc
    if values.dtype != np.uint8:
        values = values.astype(np.uint8) if values.max(initial=0) <= 255 else values.astype(np.int32)
    if min_pixels > 1:
        values = sieve(values, size=min_pixels, mask=values != nodata, connectivity=4)
    return values[y0 - top : y1 - top]


def _polygons(strip: np.ndarray, nodata: int, y0: int) -> Iterator[tuple[int, shapely.Polygon]]:
    """Regions of a strip as polygons in whole-scene pixel coordinates (column, row)."""
    for geometry, value in shapes(strip, mask=strip != nodata, connectivity=4, transform=Affine.translation(0, y0)):
        rings = geometry["coordinates"]
        shell = shapely.linearrings(np.asarray(rings[0], dtype=np.float64))
        holes = [shapely.linearrings(np.asarray(ring, dtype=np.float64)) for ring in rings[1:]]
        yield int(value), shapely.polygons(shell, holes or None)


class _Stitcher:
    """Joins pieces of regions that cross strip seams; returns regions once they are complete."""

    def __init__(self, height: int):
        self.height = height
        self.open_regions: list[_Region] = []

    def add_strip(self, polygons: Iterator[tuple[int, shapely.Polygon]], y0: int, y1: int) -> list[_Region]:
        complete: list[_Region] = []
        below: list[_Region] = []  # pieces touching the top seam
        touches_bottom: dict[int, bool] = {}  # id(piece) -> touches y1
        starting: list[_Region] = []  # pieces touching only the bottom seam
        for class_id, polygon in polygons:
            _, miny, _, maxy = polygon.bounds
            top = y0 > 0 and miny == y0
            bottom = y1 < self.height and maxy == y1
            if not top and not bottom:
                complete.append(_Region(class_id, [polygon]))
            elif top:
                touches_bottom[id(polygon)] = bottom
                below.append(_Region(class_id, [polygon], _seam_intervals(polygon, y0)))
            else:
                starting.append(_Region(class_id, [polygon]))

        next_open = starting
        for region in _join_across_seam(self.open_regions, below):
            bottom_pieces = [p for p in region.pieces if touches_bottom.get(id(p), False)]
            if bottom_pieces:
                next_open.append(_Region(region.class_id, region.pieces))
            else:
                complete.append(region)
        for region in next_open:
            region.seam = [iv for p in region.pieces if p.bounds[3] == y1 for iv in _seam_intervals(p, y1)]
        self.open_regions = next_open
        return complete


def _seam_intervals(polygon: shapely.Polygon, y: float) -> list[tuple[float, float]]:
    """Stretches [x0, x1] of the exterior ring lying on the horizontal line at `y`."""
    coords = np.asarray(polygon.exterior.coords)
    on_line = (coords[:-1, 1] == y) & (coords[1:, 1] == y)
    starts, ends = coords[:-1][on_line, 0], coords[1:][on_line, 0]
    return [(min(a, b), max(a, b)) for a, b in zip(starts, ends)]


def _join_across_seam(above: list[_Region], below: list[_Region]) -> list[_Region]:
    """Union-find over regions above and pieces below that share seam length and class."""
    nodes = above + below
    parent = list(range(len(nodes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    upper = sorted((a, b, k) for k, region in enumerate(above) for a, b in region.seam)
    lower = sorted((a, b, len(above) + k) for k, region in enumerate(below) for a, b in region.seam)
    i = j = 0
    while i < len(upper) and j < len(lower):
        a0, a1, ka = upper[i]
        b0, b1, kb = lower[j]
        if min(a1, b1) - max(a0, b0) > 0 and nodes[ka].class_id == nodes[kb].class_id:
            parent[find(ka)] = find(kb)
        if a1 <= b1:
            i += 1
        else:
            j += 1

    groups: dict[int, _Region] = {}
    for k, node in enumerate(nodes):
        root = find(k)
        if root not in groups:
            groups[root] = _Region(node.class_id, [])
        groups[root].pieces.extend(node.pieces)
    return list(groups.values())


def _finish(
    regions: list[_Region],
    scale: GroundScale,
    class_table: ClassTable,
    min_area_m2: float,
    simplify_m: float,
    row: int,
    width: int,
    lonlat: bool,
) -> FeatureBatch:
    """Union pieces, measure, drop regions under the minimum area, simplify, project."""
    if not regions:
        return FeatureBatch(np.array([], dtype=object), np.array([], dtype=np.int32), [], np.array([]))
    merged = np.array([r.pieces[0] if len(r.pieces) == 1 else shapely.union_all(r.pieces) for r in regions], dtype=object)
    # pieces of a region share seam edges, so each union is one polygon; split defensively anyway
    pixel_geoms, owner = shapely.get_parts(merged, return_index=True)
    class_ids = np.array([regions[k].class_id for k in owner], dtype=np.int32)
    areas = scale.areas_m2(pixel_geoms)
    keep = areas >= min_area_m2 if min_area_m2 > 0 else np.ones(len(regions), dtype=bool)
    pixel_geoms, class_ids, areas = pixel_geoms[keep], class_ids[keep], areas[keep]
    if simplify_m > 0 and len(pixel_geoms):
        tolerance_px = simplify_m / scale.pixel_size_m(row, width / 2)
        pixel_geoms = shapely.coverage_simplify(pixel_geoms, tolerance_px, simplify_boundary=False)
    geometries = pixels_to_crs(pixel_geoms, scale.transform)
    if lonlat:
        geometries = scale.lonlat(geometries)
    return FeatureBatch(geometries, class_ids, [class_table.name_of(int(c)) for c in class_ids], areas)
