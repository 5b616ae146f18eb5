"""What `predict` leaves for GIS software: COG layout, class legend, probabilities, GeoPackage version.

Every check reads the files with a real client: rio-cogeo's COG validator, GDAL (through
rasterio) for category names and the attribute table, sqlite3 for the GeoPackage header.
"""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
from predict_rasters import ConstantLogits, band_stats, class_table, pixel_model, random_scene, write_scene
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from cegate_cli.data.classes import ClassInfo, ClassTable
from cegate_cli.predict import MaskWriter, PredictOptions, RasterGrid, VectorOptions, predict_many, predict_scene, vectorize_mask
from cegate_cli.predict.cog import overview_count
from cegate_cli.predict.vector_io import GPKG_VERSION
from cegate_cli.predict.vector_options import DEFAULT_MIN_AREA_M2

STATS = band_stats(3)
GPKG_APPLICATION_ID = 0x47504B47  # "GPKG"


def _predict(src: Path, out: Path, table: ClassTable | None = None, model=None, **kwargs):
    table = table or class_table(4)
    return predict_scene(
        model or pixel_model(),
        src,
        out / f"{src.stem}.mask.tif",
        band_indexes=(1, 2, 3),
        stats=STATS,
        class_table=table,
        tile=128,
        overlap=32,
        batch_size=4,
        **kwargs,
    )


def _grid(width: int, height: int) -> RasterGrid:
    return RasterGrid(width, height, rasterio.crs.CRS.from_epsg(32633), from_origin(500000.0, 5000000.0, 10.0, 10.0))


@pytest.mark.parametrize(
    "height,width,levels",
    [(90, 120, 0), (200, 300, 1), (700, 800, 2)],  # smaller than a block: none; ~800 x 700: 400 x 350 and 200 x 175
)
def test_every_raster_predict_writes_is_a_valid_cog(tmp_path, height, width, levels):
    data = random_scene(height, width)
    data[:, : height // 5, : width // 4] = 0  # a nodata corner
    src = write_scene(tmp_path / "scene.tif", data, nodata=0)
    result = _predict(src, tmp_path / "out", confidence_path=tmp_path / "out" / "c.tif", probabilities_path=tmp_path / "out" / "p.tif")
    for path in (result.mask_path, tmp_path / "out" / "c.tif", tmp_path / "out" / "p.tif"):
        valid, errors, warnings = cog_validate(str(path))
        assert valid and errors == [] and warnings == [], (path.name, errors, warnings)
        with rasterio.open(path) as raster, rasterio.open(src) as scene:
            assert raster.overviews(1) == [2**k for k in range(1, levels + 1)]
            assert raster.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert raster.nodata == 255 and raster.crs == scene.crs and raster.transform == scene.transform
            assert (raster.read(1)[: height // 5, : width // 4] == 255).all()
    assert overview_count(width, height) == levels


def test_overviews_take_the_most_frequent_class_and_average_percentages(tmp_path):
    """Mode for class ids: a 2 x 2 block [[0, 3], [3, 1]] becomes 3 (nearest would give 0, average 2);
    percentages are averaged: [[0, 100], [100, 100]] becomes 75."""
    width, height = 512, 384
    ids = np.tile(np.array([[0, 3], [3, 1]], np.uint8), (height // 2, width // 2))
    ids[:64, :64] = 255  # nodata stays nodata
    percent = np.tile(np.array([[0, 100], [100, 100]], np.uint8), (height // 2, width // 2))
    writer = MaskWriter(tmp_path / "m.tif", _grid(width, height), class_table(4), confidence_path=tmp_path / "c.tif")
    with writer:
        for row in range(0, height, writer.strip_rows):
            rows = slice(row, row + writer.strip_rows)
            writer.write_rows(row, ids[rows], percent[rows])
    with rasterio.open(tmp_path / "m.tif", overview_level=0) as mask, rasterio.open(tmp_path / "c.tif", overview_level=0) as conf:
        first, confidence = mask.read(1), conf.read(1)
    assert first.shape == (height // 2, width // 2)
    assert (first[:32, :32] == 255).all() and (first[32:, :] == 3).all() and (first[:, 32:] == 3).all()
    assert set(np.unique(confidence)) == {75}


GAPPY = ClassTable((ClassInfo(0, "water", (0, 0, 255)), ClassInfo(2, "roads & <rails>", (128, 128, 128)), ClassInfo(3, "forest", (0, 128, 0))))


def _gdal_view(mask: Path, tmp_path: Path) -> ET.Element:
    """Band 1 as GDAL itself reads it (its .aux.xml included), serialised by GDAL as a VRT."""
    vrt = tmp_path / "view.vrt"
    rasterio.shutil.copy(str(mask), str(vrt), driver="VRT")
    return ET.parse(vrt).getroot().find("VRTRasterBand")


def test_class_names_reach_gdal_as_category_names_and_an_attribute_table(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(80, 100))
    result = _predict(src, tmp_path / "out", table=GAPPY)
    band = _gdal_view(result.mask_path, tmp_path)
    assert [c.text or "" for c in band.find("CategoryNames")] == ["water", "", "roads & <rails>", "forest"]
    rat = band.find("GDALRasterAttributeTable")
    fields = [(f.findtext("Name"), f.findtext("Type"), f.findtext("Usage")) for f in rat.findall("FieldDefn")]
    # integer value (GFU_MinMax), string name (GFU_Name), integer red/green/blue (GFU_Red/Green/Blue)
    assert fields == [("value", "0", "5"), ("class", "2", "2"), ("red", "0", "6"), ("green", "0", "7"), ("blue", "0", "8")]
    rows = [[f.text for f in row.findall("F")] for row in rat.findall("Row")]
    assert rows == [["0", "water", "0", "0", "255"], ["2", "roads & <rails>", "128", "128", "128"], ["3", "forest", "0", "128", "0"]]
    with rasterio.open(result.mask_path) as mask:
        colors = mask.colormap(1)
        assert mask.colorinterp[0] == ColorInterp.palette
    assert colors[2] == (128, 128, 128, 255) and colors[3] == (0, 128, 0, 255) and colors[255][3] == 0
    assert colors[1] == colors[200] == (0, 0, 0, 255)  # TIFF pads its 256 entries; the legend files list the classes


def test_a_qgis_style_beside_the_mask_lists_exactly_the_classes(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(80, 100))
    result = _predict(src, tmp_path / "out", table=GAPPY)
    style = tmp_path / "out" / "scene.mask.qml"  # QGIS loads <file name>.qml as the layer's default style
    root = ET.parse(style).getroot()
    renderer = root.find("pipe/rasterrenderer")
    assert root.tag == "qgis" and renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(e.get("value"), e.get("label"), e.get("color"), e.get("alpha")) for e in renderer.find("colorPalette")]
    assert entries == [("0", "water", "#0000ff", "255"), ("2", "roads & <rails>", "#808080", "255"), ("3", "forest", "#008000", "255")]
    assert root.find("pipe/provider/resampling").get("zoomedOutResamplingMethod") == "nearestNeighbour"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scene.mask.qml", "scene.mask.tif", "scene.mask.tif.aux.xml"]
    assert result.mask_path.is_file()


def test_a_kept_mask_gets_its_missing_legend_back_without_predicting_again(tmp_path):
    scenes = [write_scene(tmp_path / "in" / "a.tif", random_scene(70, 90))]
    options = PredictOptions(tile=64, overlap=16)
    run = lambda: predict_many(  # noqa: E731
        pixel_model(),
        scenes,
        tmp_path / "out",
        bands=(1, 2, 3),
        stats=STATS,
        class_table=class_table(4),
        options=options,
        vectors=VectorOptions(fmt=None),
    )
    assert len(run().done) == 1
    mask, style, aux = tmp_path / "out" / "a.mask.tif", tmp_path / "out" / "a.mask.qml", tmp_path / "out" / "a.mask.tif.aux.xml"
    stamp = mask.stat().st_mtime_ns
    style.unlink()
    aux.unlink()
    again = run()
    assert len(again.skipped) == 1 and mask.stat().st_mtime_ns == stamp
    assert style.is_file() and aux.is_file()
    assert [c.text for c in _gdal_view(mask, tmp_path).find("CategoryNames")] == ["water", "forest", "crop", "urban"]


def test_probabilities_are_percent_bands_named_after_the_classes(tmp_path):
    logits = [0.0, 2.0, 0.5, -1.0]
    data = random_scene(150, 170)
    data[:, 20:40, 30:60] = 0
    src = write_scene(tmp_path / "scene.tif", data, nodata=0)
    table = ClassTable((ClassInfo(0, "water", (0, 0, 255)), ClassInfo(1, "forest", (0, 128, 0)), ClassInfo(3, "urban", (255, 0, 0))))
    result = _predict(src, tmp_path / "out", table=table, model=ConstantLogits(logits), probabilities_path=tmp_path / "out" / "p.tif")
    assert result.probabilities_path == tmp_path / "out" / "p.tif"
    expected = torch.round(100 * torch.softmax(torch.tensor(logits), 0)).to(torch.uint8).tolist()
    with rasterio.open(result.probabilities_path) as probabilities:
        assert probabilities.count == 3 and probabilities.dtypes == ("uint8",) * 3 and probabilities.nodata == 255
        assert probabilities.descriptions == ("water", "forest", "urban")
        assert [probabilities.tags(b)["CLASS_ID"] for b in (1, 2, 3)] == ["0", "1", "3"]
        assert probabilities.colorinterp[1:] == (ColorInterp.undefined, ColorInterp.undefined)  # not read as RGB
        values = probabilities.read()
    assert (values[:, 20:40, 30:60] == 255).all()
    valid = np.ones(values.shape[1:], bool)
    valid[20:40, 30:60] = False
    for band, class_id in enumerate((0, 1, 3)):
        assert np.unique(values[band][valid]).tolist() == [expected[class_id]]


def test_probabilities_agree_with_the_mask_and_the_confidence(tmp_path):
    """One blend feeds all three: the mask's class has the highest probability, which is the confidence."""
    src = write_scene(tmp_path / "scene.tif", random_scene(160, 210, seed=3))
    out = tmp_path / "out"
    result = _predict(src, out, confidence_path=out / "c.tif", probabilities_path=out / "p.tif")
    with rasterio.open(result.mask_path) as m, rasterio.open(out / "c.tif") as c, rasterio.open(out / "p.tif") as p:
        ids, confidence, probabilities = m.read(1), c.read(1), p.read()
    chosen = np.take_along_axis(probabilities, ids[None].astype(np.int64), axis=0)[0]
    np.testing.assert_array_equal(chosen, confidence)
    np.testing.assert_array_equal(probabilities.max(axis=0), confidence)
    totals = probabilities.astype(int).sum(axis=0)
    assert totals.min() >= 98 and totals.max() <= 102  # four rounded shares of 100


def test_probabilities_come_from_batch_options_and_are_never_taken_as_inputs(tmp_path):
    scenes = [write_scene(tmp_path / "in" / "a.tif", random_scene(70, 90))]
    summary = predict_many(
        pixel_model(),
        scenes,
        tmp_path / "in",
        bands=(1, 2, 3),
        stats=STATS,
        class_table=class_table(4),
        options=PredictOptions(tile=64, overlap=16, probabilities=True),
        vectors=VectorOptions(fmt=None),
    )
    outputs = summary.done[0].outputs
    assert outputs.probabilities == tmp_path / "in" / "a.probabilities.tif" and outputs.probabilities.is_file()
    assert outputs.probabilities in outputs.all()
    from cegate_cli.predict import expand_inputs

    assert expand_inputs([tmp_path / "in"]) == scenes  # not a.mask.tif, not a.probabilities.tif
    outputs.probabilities.unlink()  # missing: the scene is mapped again
    again = predict_many(
        pixel_model(),
        scenes,
        tmp_path / "in",
        bands=(1, 2, 3),
        stats=STATS,
        class_table=class_table(4),
        options=PredictOptions(tile=64, overlap=16, probabilities=True),
        vectors=VectorOptions(fmt=None),
    )
    assert len(again.done) == 1 and outputs.probabilities.is_file()


def test_geopackage_is_written_as_version_1_2(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(120, 90))
    result = _predict(src, tmp_path / "out")
    gpkg = tmp_path / "out" / "scene.gpkg"
    vector = vectorize_mask(result.mask_path, gpkg, class_table=class_table(4), fmt="gpkg", chunk_rows=32)  # appended in strips
    assert vector.features > 0
    with sqlite3.connect(gpkg) as db:
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        user_version = db.execute("PRAGMA user_version").fetchone()[0]
        stored = db.execute("SELECT count(*) FROM scene").fetchone()[0]
    assert GPKG_VERSION == "1.2"
    assert application_id == GPKG_APPLICATION_ID and user_version == 10200
    assert stored == vector.features


def test_predict_merges_regions_below_the_default_minimum_area(tmp_path):
    """Sub-metre pixels: speckle of single pixels (0.25 m²) is merged away by default, the
    regions of whole 8 x 8 blocks (16 m²) stay; 0 keeps every region."""
    blocks = np.repeat(np.repeat(random_scene(12, 14), 8, axis=1), 8, axis=2)
    speckle = np.random.default_rng(1).random(blocks.shape[1:]) < 0.03
    blocks[:, speckle] = random_scene(96, 112, seed=5)[:, speckle]
    src = write_scene(tmp_path / "in" / "fine.tif", blocks, transform=from_origin(500000.0, 5000000.0, 0.5, 0.5))

    def polygons(vectors: VectorOptions, out: Path):
        summary = predict_many(
            pixel_model(),
            [src],
            out,
            bands=(1, 2, 3),
            stats=STATS,
            class_table=class_table(4),
            options=PredictOptions(tile=64, overlap=16),
            vectors=vectors,
        )
        return summary.done[0].vectors

    default = polygons(VectorOptions(fmt="gpkg"), tmp_path / "default")
    everything = polygons(VectorOptions(fmt="gpkg", min_area_m2=0.0), tmp_path / "all")
    assert VectorOptions().min_area_m2 == DEFAULT_MIN_AREA_M2 > 0
    assert 0 < default.features < everything.features / 2
    kept = gpd.read_file(tmp_path / "default" / "fine.gpkg")
    assert kept.area_m2.min() >= DEFAULT_MIN_AREA_M2 and kept.area_m2.sum() == pytest.approx(96 * 112 * 0.25, rel=0.01)  # ground area, all kept
