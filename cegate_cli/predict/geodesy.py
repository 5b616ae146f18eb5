"""Metres on the ground for any raster grid, geographic (degrees) or projected.

Minimum areas, simplification tolerances and reported polygon areas are given in metres, so
they must mean the same on a UTM scene, a Web Mercator scene (whose planar areas are inflated by
1/cos^2(latitude)) and an EPSG:4326 scene (whose units are degrees). Everything here therefore
goes through longitude/latitude and the WGS84 ellipsoid: areas are ellipsoidal (true ground)
areas, within about 0.1% of UTM planar areas. A CRS that cannot be related to the Earth (a local
engineering CRS) falls back to planar measures in its own linear unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from pyproj.exceptions import ProjError
from rasterio.crs import CRS

WGS84 = Geod(ellps="WGS84")
SAMPLE = 16  # pixels per side of the patch that gives the local pixel size (numerically steadier)
LOCAL_M = 20_000.0  # polygons spanning at most this many metres: pixel area x local pixel area
GRID_STEP = 64  # pixels between sampled pixel areas (interpolated in between)
DENSIFY_PX = 8.0  # longest edge, in pixels, when measuring a large polygon on the ellipsoid


@dataclass
class GroundScale:
    """Converts between a grid's pixels/CRS units and metres on the ground."""

    transform: Affine
    to_lonlat: Transformer | None  # None: planar fallback in `unit_metres`
    unit_metres: float
    _pixel_areas: dict[tuple[int, int], float] = field(default_factory=dict, repr=False, compare=False)
    _nominal: float | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, crs: CRS, transform: Affine) -> GroundScale:
        proj_crs = ProjCRS.from_user_input(crs.to_wkt())
        try:
            to_lonlat: Transformer | None = Transformer.from_crs(proj_crs, ProjCRS.from_epsg(4326), always_xy=True)
            x, y = transform @ (0.5, 0.5)
            lon, lat = to_lonlat.transform(x, y)
            if not (math.isfinite(lon) and math.isfinite(lat)):
                to_lonlat = None
        except ProjError:
            to_lonlat = None
        unit_metres = 1.0
        if proj_crs.axis_info and proj_crs.axis_info[0].unit_conversion_factor and not proj_crs.is_geographic:
            unit_metres = float(proj_crs.axis_info[0].unit_conversion_factor)
        return cls(transform=transform, to_lonlat=to_lonlat, unit_metres=unit_metres)

    @property
    def geodetic(self) -> bool:
        """Whether areas are ellipsoidal (True) or planar in the CRS's unit (False)."""
        return self.to_lonlat is not None

    def pixel_area_m2(self, row: float, col: float) -> float:
        """Ground area of one pixel centred on (row, col) (a patch average, exact to first order)."""
        r, c = row - SAMPLE / 2, col - SAMPLE / 2
        corners = [(c, r), (c + SAMPLE, r), (c + SAMPLE, r + SAMPLE), (c, r + SAMPLE)]
        xs, ys = zip(*(self.transform @ corner for corner in corners))
        if self.to_lonlat is None:
            planar = abs(shapely.Polygon(list(zip(xs, ys))).area)
            return planar * self.unit_metres**2 / SAMPLE**2
        lons, lats = self.to_lonlat.transform(np.array(xs), np.array(ys))
        area, _ = WGS84.polygon_area_perimeter(lons, lats)
        return abs(area) / SAMPLE**2

    def pixel_size_m(self, row: float, col: float) -> float:
        """Mean ground length of one pixel step (x and y) centred on (row, col)."""
        r, c = row - SAMPLE / 2, col - SAMPLE / 2
        x0, y0 = self.transform @ (c, r)
        x1, y1 = self.transform @ (c + SAMPLE, r)
        x2, y2 = self.transform @ (c, r + SAMPLE)
        if self.to_lonlat is None:
            return (math.hypot(x1 - x0, y1 - y0) + math.hypot(x2 - x0, y2 - y0)) / 2 * self.unit_metres / SAMPLE
        lons, lats = self.to_lonlat.transform(np.array([x0, x1, x2]), np.array([y0, y1, y2]))
        _, _, dx = WGS84.inv(lons[0], lats[0], lons[1], lats[1])
        _, _, dy = WGS84.inv(lons[0], lats[0], lons[2], lats[2])
        return (abs(dx) + abs(dy)) / 2 / SAMPLE

    def areas_m2(self, pixel_geometries: np.ndarray) -> np.ndarray:
        """Ground areas of polygons given in (column, row) pixel coordinates.

        A polygon spanning at most `LOCAL_M` metres is its pixel area times the ground area of
        a pixel at its centroid: exact where the pixel area varies linearly across the polygon,
        within about 1e-5 for UTM or geographic grids at that size, and interpolated from a
        cached grid, so it costs almost nothing per polygon. Larger polygons are measured on the
        ellipsoid directly, at a cost that grows with their vertex count
        (docs/design-measurements.md).
        """
        pixel_areas = shapely.area(pixel_geometries)
        if self.to_lonlat is None:
            return pixel_areas * abs(self.transform.determinant) * self.unit_metres**2
        bounds = shapely.bounds(pixel_geometries).reshape(-1, 4)
        extent_px = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
        local = extent_px * self._nominal_pixel_m() <= LOCAL_M
        areas = np.empty(len(pixel_geometries), dtype=np.float64)
        centroids = shapely.get_coordinates(shapely.centroid(pixel_geometries[local])).reshape(-1, 2)
        for k, (cx, cy) in zip(np.flatnonzero(local), centroids):
            areas[k] = pixel_areas[k] * self._local_pixel_area(cy, cx)
        large = np.flatnonzero(~local)
        if len(large):
            # densified so that edges follow the grid (e.g. parallels in EPSG:4326), not geodesics
            dense = shapely.segmentize(pixel_geometries[large], DENSIFY_PX)
            lonlat = self.lonlat(pixels_to_crs(dense, self.transform))
            areas[large] = [abs(WGS84.geometry_area_perimeter(g)[0]) for g in lonlat]
        return areas

    def _local_pixel_area(self, row: float, col: float) -> float:
        """Pixel area at (row, col), interpolated bilinearly between pixel areas sampled every
        `GRID_STEP` pixels (cached): a smooth function of position, so within about 1e-5."""
        r0 = math.floor(row / GRID_STEP) * GRID_STEP
        c0 = math.floor(col / GRID_STEP) * GRID_STEP
        fr, fc = (row - r0) / GRID_STEP, (col - c0) / GRID_STEP
        a00, a01, a10, a11 = (
            self._sampled_pixel_area(r, c) for r, c in ((r0, c0), (r0, c0 + GRID_STEP), (r0 + GRID_STEP, c0), (r0 + GRID_STEP, c0 + GRID_STEP))
        )
        return (a00 * (1 - fc) + a01 * fc) * (1 - fr) + (a10 * (1 - fc) + a11 * fc) * fr

    def _sampled_pixel_area(self, row: int, col: int) -> float:
        area = self._pixel_areas.get((row, col))
        if area is None:
            area = self._pixel_areas[(row, col)] = self.pixel_area_m2(row, col)
        return area

    def _nominal_pixel_m(self) -> float:
        """Ground size of a pixel near the grid origin, to tell small polygons from large ones."""
        if self._nominal is None:
            self._nominal = self.pixel_size_m(0.0, 0.0)
        return self._nominal

    def lonlat(self, geometries: np.ndarray) -> np.ndarray:
        """The same geometries in EPSG:4326, longitude first."""
        if self.to_lonlat is None:
            raise ValueError("this CRS cannot be related to longitude/latitude")
        transformer = self.to_lonlat

        def reproject(coords: np.ndarray) -> np.ndarray:
            lon, lat = transformer.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([lon, lat])

        return shapely.transform(geometries, reproject)


def pixels_to_crs(geometries: np.ndarray, transform: Affine) -> np.ndarray:
    """Apply a raster's affine transform to geometries in (column, row) pixel coordinates."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def apply(coords: np.ndarray) -> np.ndarray:
        x, y = coords[:, 0], coords[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return shapely.transform(geometries, apply)
