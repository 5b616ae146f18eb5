"""Polygons from masks: exact round trips across chunk seams, areas in m2, lon/lat GeoJSON."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from predict_rasters import UTM_TRANSFORM, class_table, write_scene
from pyproj import Geod, Transformer
from rasterio.features import rasterize
from rasterio.transform import from_origin

from cegate_cli.errors import DataError
from cegate_cli.predict import vectorize_mask

CLASSES = class_table(4)


def _blocky_mask(height: int, width: int, seed: int = 0, cell: int = 9) -> np.ndarray:
    """Class patches of varying size, a nodata hole, and one-pixel specks."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, size=(height // cell + 1, width // cell + 1))
    mask = np.kron(coarse, np.ones((cell, cell), dtype=np.int64))[:height, :width].astype(np.uint8)
    specks = rng.random((height, width)) < 0.004
    mask[specks] = (mask[specks] + 1) % 4
    mask[40:55, 20:60] = 255
    return mask


def _write_mask(path, mask, **kwargs):
    kwargs.setdefault("block", 16)  # small blocks so that small chunk_rows give many seams
    return write_scene(path, mask, nodata=255, **kwargs)


def _rasterize(frame: gpd.GeoDataFrame, shape, transform) -> np.ndarray:
    return rasterize(zip(frame.geometry, frame.class_id), out_shape=shape, transform=transform, fill=255, dtype="uint8")


@pytest.mark.parametrize("chunk_rows", [16, 48, 10_000])
def test_polygons_rasterise_back_to_the_mask_whatever_the_chunking(tmp_path, chunk_rows):
    mask = _blocky_mask(150, 97)
    src = _write_mask(tmp_path / "m.tif", mask)
    result = vectorize_mask(src, tmp_path / "m.gpkg", class_table=CLASSES, fmt="gpkg", chunk_rows=chunk_rows)
    frame = gpd.read_file(tmp_path / "m.gpkg")
    np.testing.assert_array_equal(_rasterize(frame, mask.shape, UTM_TRANSFORM), mask)
    assert frame.geometry.is_valid.all()
    assert result.features == len(frame)
    # every region is one feature, stitched across seams: same count as one single chunk
    single = vectorize_mask(src, tmp_path / "one.gpkg", class_table=CLASSES, fmt="gpkg", chunk_rows=10_000)
    assert result.features == single.features
    assert result.class_features == single.class_features


def test_a_ring_crossing_many_seams_is_one_polygon_with_a_hole(tmp_path):
    mask = np.zeros((64, 40), dtype=np.uint8)
    mask[8:56, 8:32] = 1
    mask[20:44, 16:24] = 2
    src = _write_mask(tmp_path / "ring.tif", mask)
    vectorize_mask(src, tmp_path / "ring.gpkg", class_table=CLASSES, fmt="gpkg", chunk_rows=16)
    frame = gpd.read_file(tmp_path / "ring.gpkg")
    assert sorted(frame.class_id.tolist()) == [0, 1, 2]
    ring = frame[frame.class_id == 1].geometry.iloc[0]
    assert ring.geom_type == "Polygon" and len(ring.interiors) == 1
    assert ring.area == pytest.approx((48 * 24 - 24 * 8) * 100.0)


def test_areas_are_square_metres_and_min_area_removes_only_small_regions(tmp_path):
    mask = _blocky_mask(150, 97, seed=3)
    src = _write_mask(tmp_path / "m.tif", mask)
    min_area = 10 * 100.0  # ten 10 m pixels
    vectorize_mask(src, tmp_path / "m.gpkg", class_table=CLASSES, fmt="gpkg", min_area_m2=min_area, chunk_rows=32)
    frame = gpd.read_file(tmp_path / "m.gpkg")
    assert (frame.area_m2 >= min_area).all()
    # ellipsoidal area within 0.1% of the UTM planar area (scale factor 0.9996)
    np.testing.assert_allclose(frame.area_m2, frame.geometry.area, rtol=1e-3)
    assert set(frame.columns) >= {"class_id", "class_name", "area_m2"}
    assert frame.class_name.tolist() == [CLASSES.name_of(c) for c in frame.class_id]

    # regions of at least min_area pixels survive unchanged: compare with the unsieved output
    full = gpd.read_file(vectorize_mask(src, tmp_path / "full.gpkg", class_table=CLASSES, fmt="gpkg", chunk_rows=32).path)
    big = full[full.area_m2 >= 4 * min_area]
    kept = _rasterize(frame, mask.shape, UTM_TRANSFORM)
    big_pixels = _rasterize(big, mask.shape, UTM_TRANSFORM)
    inside = big_pixels != 255
    np.testing.assert_array_equal(kept[inside], big_pixels[inside])  # only small regions changed
    assert len(frame) < len(full)


def test_geojson_is_lon_lat_counter_clockwise_rfc7946(tmp_path):
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[10:20, 10:30] = 1
    src = _write_mask(tmp_path / "m.tif", mask)
    vectorize_mask(src, tmp_path / "m.geojson", class_table=CLASSES, fmt="geojson")
    doc = json.loads((tmp_path / "m.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    feature = next(f for f in doc["features"] if f["properties"]["class_id"] == 1)
    ring = np.array(feature["geometry"]["coordinates"][0])
    lon, lat = ring[:-1].mean(axis=0)
    # block centre: easting 500200, northing 4999850 in UTM 33N (central meridian 15 E)
    expected_lon, expected_lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(500200.0, 4999850.0)
    assert 15.0 < lon < 15.01 and 45.1 < lat < 45.2  # longitude first, in degrees
    assert (lon, lat) == (pytest.approx(expected_lon, abs=1e-6), pytest.approx(expected_lat, abs=1e-6))
    outer = shapely.geometry.shape(feature["geometry"])
    assert outer.exterior.is_ccw
    background = shapely.geometry.shape(next(f for f in doc["features"] if f["properties"]["class_id"] == 0)["geometry"])
    assert not background.interiors[0].is_ccw  # holes clockwise
    assert feature["properties"] == {"class_id": 1, "class_name": "forest", "area_m2": pytest.approx(20000.0, rel=1e-3)}


def test_geographic_mask_uses_metres_not_degrees(tmp_path):
    transform = from_origin(12.0, 60.0, 0.0001, 0.0001)  # ~5.6 m x 11.1 m pixels at 60 N
    mask = np.zeros((50, 50), dtype=np.uint8)
    mask[10:20, 10:20] = 1  # 100 pixels, ~6200 m2
    mask[30:32, 30:32] = 2  # 4 pixels, ~250 m2
    src = _write_mask(tmp_path / "geo.tif", mask, crs="EPSG:4326", transform=transform)
    vectorize_mask(src, tmp_path / "geo.geojson", class_table=CLASSES, min_area_m2=1000.0)
    frame = gpd.read_file(tmp_path / "geo.geojson")
    assert sorted(frame.class_id.tolist()) == [0, 1]  # the 250 m2 speck is gone, the 6200 m2 block stays
    square = frame[frame.class_id == 1].iloc[0]
    expected, _ = Geod(ellps="WGS84").polygon_area_perimeter([12.001, 12.002, 12.002, 12.001], [59.999, 59.999, 59.998, 59.998])
    assert square.area_m2 == pytest.approx(abs(expected), rel=1e-4)


def _smooth_mask(height: int, width: int) -> np.ndarray:
    """Classes from a smooth field: staircase boundaries and many triple junctions, like a prediction."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.sin(x / 17.0) * np.cos(y / 13.0) + 0.5 * np.sin((x + y) / 11.0) + 0.3 * np.sin(x / 5.0) * np.sin(y / 7.0)
    return np.clip(((field + 1.8) / 3.6 * 4).astype(np.int64), 0, 3).astype(np.uint8)


@pytest.mark.parametrize("kind", ["blocky", "smooth"])
def test_simplification_keeps_a_gapless_coverage(tmp_path, kind):
    mask = _blocky_mask(120, 120, seed=5, cell=13) if kind == "blocky" else _smooth_mask(150, 130)
    src = _write_mask(tmp_path / "m.tif", mask)
    vectorize_mask(src, tmp_path / "raw.gpkg", class_table=CLASSES, fmt="gpkg", chunk_rows=32)
    vectorize_mask(src, tmp_path / "simple.gpkg", class_table=CLASSES, fmt="gpkg", simplify_m=25.0, chunk_rows=32)
    raw, simple = gpd.read_file(tmp_path / "raw.gpkg"), gpd.read_file(tmp_path / "simple.gpkg")
    assert len(simple) == len(raw)
    assert shapely.get_num_coordinates(simple.geometry.values).sum() < shapely.get_num_coordinates(raw.geometry.values).sum()
    assert simple.geometry.is_valid.all()
    union = shapely.union_all(simple.geometry.values)
    assert simple.geometry.area.sum() == pytest.approx(union.area, rel=1e-9)  # no overlaps
    assert union.area == pytest.approx(shapely.union_all(raw.geometry.values).area, rel=1e-9)  # no gaps
    np.testing.assert_allclose(simple.area_m2, raw.area_m2)  # areas are measured before simplifying


def test_mask_without_crs_cannot_be_vectorised(tmp_path):
    src = _write_mask(tmp_path / "plain.tif", np.zeros((20, 20), dtype=np.uint8), crs=None, transform=None)
    with pytest.raises(DataError, match="CRS"):
        vectorize_mask(src, tmp_path / "plain.geojson", class_table=CLASSES)
    assert not (tmp_path / "plain.geojson").exists()


def test_gpkg_keeps_the_native_crs(tmp_path):
    mask = np.zeros((20, 20), dtype=np.uint8)
    src = _write_mask(tmp_path / "m.tif", mask, crs="EPSG:3035", transform=from_origin(4321000, 3210000, 20, 20))
    vectorize_mask(src, tmp_path / "m.gpkg", class_table=CLASSES, fmt="gpkg")
    frame = gpd.read_file(tmp_path / "m.gpkg")
    assert frame.crs.to_epsg() == 3035
    assert frame.geometry.iloc[0].bounds == (4321000.0, 3209600.0, 4321400.0, 3210000.0)
    with rasterio.open(src) as ds:
        assert ds.crs.to_epsg() == 3035
