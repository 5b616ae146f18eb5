"""One polygon layer for a batch (`--vector-merge`) and the polygons' QGIS style (issue 32 item 7):
real files written by `predict_many`, read back with pyogrio, sqlite3 and an XML parser."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
import torch
from predict_rasters import band_stats, pixel_model, random_scene, write_scene
from pyproj import Transformer
from rasterio.transform import from_origin

from cegate_cli.data.classes import ClassInfo, ClassTable
from cegate_cli.errors import InputError, MappingInterrupted
from cegate_cli.predict import PredictOptions, VectorOptions, predict_many
from cegate_cli.predict.legend import pam_xml, qml
from cegate_cli.predict.outputs import VectorFormat, register_vector_format, unregister_vector_format
from cegate_cli.predict.vector_io import GeoPackageSink

OPTIONS = PredictOptions(tile=64, overlap=16)
CLASSES = ClassTable(
    (
        ClassInfo(0, "water", (31, 120, 180)),
        ClassInfo(1, "forest", (51, 160, 44)),
        ClassInfo(2, "roads & <rails>", (227, 26, 28)),
        ClassInfo(3, "bare soil", (253, 191, 111)),
    )
)
ZONE_34 = from_origin(300000.0, 5000000.0, 10.0, 10.0)  # EPSG:32634, west of lon 21 E: next to the 33N scenes


def _scenes(folder: Path, names: list[str], crs: dict[str, str] | None = None) -> list[Path]:
    crs = crs or {}
    return [
        write_scene(folder / f"{name}.tif", random_scene(70, 90, seed=i), **({"crs": crs[name], "transform": ZONE_34} if name in crs else {}))
        for i, name in enumerate(names)
    ]


def _run(scenes: list[Path], out: Path, fmt: str = "gpkg", merge: bool = True, **kwargs):
    kwargs.setdefault("options", OPTIONS)
    return predict_many(
        kwargs.pop("model", pixel_model()),
        scenes,
        out,
        bands=(1, 2, 3),
        stats=band_stats(3),
        class_table=CLASSES,
        vectors=VectorOptions(fmt=fmt, merge=merge),
        **kwargs,
    )


def _layer(path: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(path, layer=path.stem)


def _style_colours(style: Path) -> list[tuple[str, str, str]]:
    """(category value, label, fill colour) of a polygon style, from the XML alone."""
    root = ET.parse(style).getroot()  # well-formed, or this raises
    renderer = root.find("renderer-v2")
    assert root.tag == "qgis" and renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_id"
    fills = {}
    for symbol in renderer.find("symbols"):
        layer = symbol.find("layer")
        assert symbol.get("type") == "fill" and layer.get("class") == "SimpleFill"
        options = {o.get("name"): o.get("value") for o in layer.find("Option")}
        props = {p.get("k"): p.get("v") for p in layer.findall("prop")}
        assert options == props  # both forms say the same (QGIS >= 3.18 reads the first, older the second)
        fills[symbol.get("name")] = options["color"]
    return [(c.get("value"), c.get("label"), fills[c.get("symbol")]) for c in renderer.find("categories")]


def _legend_colours(table: ClassTable) -> list[tuple[str, str, str]]:
    """The mask's own legend (its QGIS palette and GDAL attribute table), as a polygon style writes colours."""
    palette = ET.fromstring(qml(table).split("\n", 1)[1]).find("pipe/rasterrenderer/colorPalette")
    rows = ET.fromstring(pam_xml(table)).find("PAMRasterBand/GDALRasterAttributeTable").findall("Row")
    from_rat = [tuple(f.text for f in row) for row in rows]
    expected = []
    for entry, (value, name, red, green, blue) in zip(palette, from_rat):
        colour = entry.get("color")
        assert (entry.get("value"), entry.get("label")) == (value, name)
        assert tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5)) == (int(red), int(green), int(blue))
        expected.append((value, name, f"{red},{green},{blue},255"))
    return expected


def test_merged_geopackage_holds_every_scene_with_a_scene_column_in_the_first_scenes_crs(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path / "in", ["a", "b", "c"], crs={"b": "EPSG:32634"})
    out = tmp_path / "out"
    summary = _run(scenes, out)
    merged = summary.merged
    assert summary.ok and merged.status == "done" and merged.path == out / "polygons.gpkg"
    frame = _layer(merged.path)
    per_scene = {s.stem: _layer(out / f"{s.stem}.gpkg") for s in scenes}
    assert len(frame) == sum(len(f) for f in per_scene.values()) == merged.layer.features > 0
    assert list(frame.columns) == ["scene", "class_id", "class_name", "area_m2", "geometry"]
    assert frame["scene"].value_counts().to_dict() == {stem: len(f) for stem, f in per_scene.items()}
    assert list(dict.fromkeys(frame["scene"])) == ["a", "b", "c"]  # input order
    assert frame.crs.to_epsg() == 32633 and pyogrio.read_info(merged.path, layer="polygons")["geometry_type"] == "Polygon"
    assert merged.layer.reprojected == ("b",) and merged.layer.crs == "EPSG:32633"
    assert merged.layer.note == "polygons.gpkg: 1 of 3 scenes reprojected to EPSG:32633, the first scene's CRS (b)"
    # Scene b's polygons are its own, moved into zone 33: back in zone 34 they are the scene's file.
    b = frame[frame["scene"] == "b"]
    back = Transformer.from_crs(32633, 32634, always_xy=True)
    returned = shapely.transform(b.geometry.values, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))
    original = per_scene["b"].geometry.values
    assert abs(shapely.union_all(returned).symmetric_difference(shapely.union_all(original)).area) < 1e-3 * shapely.union_all(original).area
    assert list(b["area_m2"]) == list(per_scene["b"]["area_m2"])  # each scene's own areas, not re-measured
    a = frame[frame["scene"] == "a"]
    assert shapely.equals(a.geometry.values, per_scene["a"].geometry.values).all()  # the first scene's, untouched
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_merged_geojson_is_lon_lat_with_a_scene_column(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path / "in", ["a", "b"], crs={"b": "EPSG:32634"})
    summary = _run(scenes, tmp_path / "out", fmt="geojson")
    assert summary.merged.path == tmp_path / "out" / "polygons.geojson" and summary.merged.layer.reprojected == ()
    frame = gpd.read_file(summary.merged.path)
    assert frame.crs.to_epsg() == 4326
    assert len(frame) == sum(len(gpd.read_file(tmp_path / "out" / f"{s.stem}.geojson")) for s in scenes)
    assert sorted(set(frame["scene"])) == ["a", "b"] and {"class_id", "class_name", "area_m2"} <= set(frame.columns)
    assert (tmp_path / "out" / "polygons.qml").is_file()


def test_every_polygon_file_has_the_masks_colours_as_a_qgis_style(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path / "in", ["a", "b"])
    out = tmp_path / "out"
    _run(scenes, out)
    expected = _legend_colours(CLASSES)
    assert [label for _, label, _ in expected] == ["water", "forest", "roads & <rails>", "bare soil"]
    for name in ("a", "b", "polygons"):
        style = out / f"{name}.qml"  # QGIS loads <file name>.qml as the layer's default style
        assert _style_colours(style) == expected
        # ... and the GeoPackage holds the same style where QGIS looks first: layer_styles, as its default.
        gpkg = out / f"{name}.gpkg"
        with sqlite3.connect(gpkg) as db:
            rows = db.execute(
                "SELECT f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, styleQML, useAsDefault FROM layer_styles"
            ).fetchall()
            registered = db.execute("SELECT data_type FROM gpkg_contents WHERE table_name = 'layer_styles'").fetchall()
            version = db.execute("PRAGMA user_version").fetchone()[0]
        geometry = pyogrio.read_info(gpkg, layer=name)["geometry_name"]
        assert rows == [("", "", name, geometry, name, style.read_text(encoding="utf-8"), 1)]
        assert registered == [("attributes",)] and version == 10200  # a table GDAL made, in a 1.2 file
        assert [layer for layer, kind in pyogrio.list_layers(gpkg) if kind is not None] == [name]


def test_a_kept_geopackage_without_style_gets_its_qml_back_and_a_rerun_keeps_the_merge(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path / "in", ["a", "b"])
    out = tmp_path / "out"
    first = _run(scenes, out)
    stamp = first.merged.path.stat().st_mtime_ns
    (out / "a.qml").unlink()  # deleted, or written by a cegate without polygon styles
    again = _run(scenes, out)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"] and (out / "a.qml").is_file()
    assert again.merged.status == "skipped" and "exists (use --overwrite" in again.merged.message and again.ok
    assert first.merged.path.stat().st_mtime_ns == stamp
    redone = _run(scenes, out, overwrite=True)
    assert redone.merged.status == "done" and first.merged.path.stat().st_mtime_ns != stamp


def test_an_interrupted_batch_leaves_no_merge_and_its_rerun_merges_old_and_new_scenes(tmp_path: Path) -> None:
    class CtrlCAt(torch.nn.Module):
        def __init__(self, at: int) -> None:
            super().__init__()
            self.model, self.calls, self.at = pixel_model(), 0, at

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
            return self.model(pixels)

    scenes = _scenes(tmp_path / "in", ["a", "b", "c"])
    out = tmp_path / "out"
    with pytest.raises(MappingInterrupted, match="1 of 3 scenes finished"):
        _run(scenes, out, model=CtrlCAt(at=6), options=PredictOptions(tile=64, overlap=16, batch_size=1))  # 4 tiles a scene: stopped in b
    assert not (out / "polygons.gpkg").exists() and not [p for p in out.iterdir() if ".tmp-" in p.name]
    resumed = _run(scenes, out)
    assert [o.status for o in resumed.outcomes] == ["skipped", "done", "done"] and resumed.merged.status == "done"
    frame = _layer(out / "polygons.gpkg")
    assert frame["scene"].value_counts().to_dict() == {s.stem: len(_layer(out / f"{s.stem}.gpkg")) for s in scenes}


def test_failed_scenes_leave_the_merge_unwritten_until_a_rerun_maps_them(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path / "in", ["a", "c"])
    broken = tmp_path / "in" / "b.tif"
    broken.write_bytes(scenes[0].read_bytes()[:3000])  # truncated: fails alone
    out = tmp_path / "out"
    first = _run([scenes[0], broken, scenes[1]], out)
    assert not first.ok and first.merged.status == "skipped" and not first.merged.path.exists()
    assert first.merged.message == (
        f"{out / 'polygons.gpkg'}: not written, 1 of 3 scenes failed and it holds whole batches; "
        "run the same command again once they map (finished scenes are skipped)"
    )
    write_scene(broken, random_scene(70, 90, seed=7))  # fixed
    second = _run([scenes[0], broken, scenes[1]], out)
    assert [o.status for o in second.outcomes] == ["skipped", "done", "skipped"] and second.merged.status == "done"
    assert list(dict.fromkeys(_layer(out / "polygons.gpkg")["scene"])) == ["a", "b", "c"]


def test_an_existing_merge_that_would_go_stale_is_refused_before_mapping(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path / "in", ["a", "b"])
    out = tmp_path / "out"
    _run(scenes[:1], out)
    with pytest.raises(InputError, match=r"polygons\.gpkg exists and would no longer hold the whole batch: 1 scene\(s\) are still to map \(b\.tif\)"):
        _run(scenes, out)
    assert not (out / "b.mask.tif").exists()  # refused before anything was mapped
    (out / "polygons.gpkg").unlink()
    assert _run(scenes, out).merged.layer.scenes == 2


def test_merge_is_refused_where_it_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--vector-merge merges the scenes' polygons, and --vector none writes none; give --vector geojson or --vector gpkg"):
        VectorOptions(fmt=None, merge=True).check()
    csv = VectorFormat("csv", "CSV", ".polygons.csv", "native CRS", lonlat=False, sink="test_output_registry:CsvSink")
    register_vector_format(csv)
    try:
        with pytest.raises(InputError, match="--vector-merge: CSV polygons cannot be read back to merge; use --vector geojson or --vector gpkg"):
            VectorOptions(fmt="csv", merge=True).check()
    finally:
        unregister_vector_format("csv")
    VectorOptions(fmt="gpkg", merge=True).check()
    named = _scenes(tmp_path / "in", ["polygons"])
    with pytest.raises(InputError, match="a scene named polygons would write its own polygons to polygons.gpkg"):
        _run(named, tmp_path / "out")
    assert _run(named, tmp_path / "plain", merge=False).ok  # without the merge the name is free


def test_ctrl_c_while_merging_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenes = _scenes(tmp_path / "in", ["a", "b"])
    out = tmp_path / "out"
    write = GeoPackageSink.write
    calls = []

    def stopping(self: GeoPackageSink, batch) -> None:
        if self.path.name == "polygons.gpkg":
            calls.append(batch.scene)
            if batch.scene == "b":
                raise KeyboardInterrupt
        write(self, batch)

    monkeypatch.setattr(GeoPackageSink, "write", stopping)
    with pytest.raises(MappingInterrupted) as err:
        _run(scenes, out)
    assert str(err.value) == (
        f"Interrupted: {out}: all 2 scenes finished; stopped while merging their polygons into polygons.gpkg, which is left "
        "unwritten (nothing half-written); run the same command again to write it (finished scenes are skipped)"
    )
    assert "a" in calls and not (out / "polygons.gpkg").exists() and not (out / "polygons.qml").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    monkeypatch.setattr(GeoPackageSink, "write", write)
    again = _run(scenes, out)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"] and again.merged.status == "done"


def test_scenes_without_a_crs_are_left_out_of_the_merge(tmp_path: Path) -> None:
    plain = write_scene(tmp_path / "in" / "plain.tif", random_scene(40, 40), crs=None, transform=None)
    placed = _scenes(tmp_path / "in", ["a"])[0]
    summary = _run([plain, placed], tmp_path / "out")
    assert summary.merged.status == "done" and set(_layer(summary.merged.path)["scene"]) == {"a"}
    alone = _run([plain], tmp_path / "alone")
    assert alone.merged.status == "skipped" and "no scene has polygons" in alone.merged.message and alone.ok


@pytest.mark.parametrize("fmt", ["gpkg", "geojson"])
def test_a_scene_without_polygons_adds_nothing_and_breaks_nothing(tmp_path: Path, fmt: str) -> None:
    empty = write_scene(tmp_path / "in" / "empty.tif", np.zeros((3, 40, 40), dtype=np.uint16), nodata=0)  # all nodata
    placed = _scenes(tmp_path / "in", ["a"])[0]
    summary = _run([empty, placed], tmp_path / "out", fmt=fmt)
    assert [o.vectors.features == 0 for o in summary.done] == [True, False] and summary.merged.status == "done"
    frame = gpd.read_file(summary.merged.path, **({"layer": "polygons"} if fmt == "gpkg" else {}))
    assert set(frame["scene"]) == {"a"} and len(frame) == summary.done[1].vectors.features
