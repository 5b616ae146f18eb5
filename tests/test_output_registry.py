"""predict's outputs are declared once (predict/outputs.py): a polygon format registered from this
test module, with its own sink, is chosen by `VectorOptions`, named, written and listed like the
built-in ones with no other file edited; the optional rasters' names are the library's options."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import TracebackType

import pytest
import shapely
from predict_rasters import band_stats, class_table, pixel_model, random_scene, write_scene

from cegate_cli.errors import InputError
from cegate_cli.predict import PredictOptions, VectorOptions, output_paths, predict_many
from cegate_cli.predict.map_options import MapOptions
from cegate_cli.predict.outputs import (
    NO_VECTOR,
    VectorFormat,
    output_markers,
    register_vector_format,
    switched_outputs,
    unregister_vector_format,
    vector_format_names,
)
from cegate_cli.predict.vector_io import FeatureBatch


class CsvSink:
    """One row per polygon: class_id, class_name, area_m2, WKT in the mask's CRS."""

    def __init__(self, path: Path, crs: object) -> None:
        self.path = Path(path)
        self.rows: list[list[object]] = []

    def __enter__(self) -> CsvSink:
        return self

    def write(self, batch: FeatureBatch) -> None:
        for geometry, class_id, name, area in zip(batch.geometries, batch.class_ids, batch.class_names, batch.areas_m2):
            self.rows.append([int(class_id), name, round(float(area), 2), shapely.to_wkt(geometry)])

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            with open(self.path, "w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows([["class_id", "class_name", "area_m2", "wkt"], *self.rows])


FORMAT = VectorFormat("csv", "CSV", ".polygons.csv", "native CRS", lonlat=False, sink=f"{__name__}:CsvSink")


@pytest.fixture()
def csv_format():
    register_vector_format(FORMAT)
    try:
        yield FORMAT
    finally:
        unregister_vector_format(FORMAT.name)
    assert "csv" not in vector_format_names()


def test_a_registered_vector_format_is_chosen_named_and_written(csv_format, tmp_path: Path) -> None:
    VectorOptions(fmt="csv").check()
    scene = write_scene(tmp_path / "in" / "a.tif", random_scene(70, 90, seed=1))
    paths = output_paths(scene, tmp_path / "out", vector_format="csv")
    assert paths.vector == tmp_path / "out" / "a.polygons.csv" and paths.all() == [paths.mask, paths.vector]
    kwargs = dict(bands=(1, 2, 3), stats=band_stats(3), class_table=class_table(4), options=PredictOptions(tile=64, overlap=16))
    written = predict_many(pixel_model(), [scene], tmp_path / "out", vectors=VectorOptions(fmt="csv", min_area_m2=0.0), **kwargs)
    outcome = written.done[0]
    assert outcome.outputs.vector == paths.vector and outcome.vectors is not None
    with open(paths.vector, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == outcome.vectors.features > 0
    # The same polygons as the built-in GeoPackage writes, in the same CRS.
    reference = predict_many(pixel_model(), [scene], tmp_path / "gpkg", vectors=VectorOptions(fmt="gpkg", min_area_m2=0.0), **kwargs)
    import geopandas as gpd

    frame = gpd.read_file(reference.done[0].outputs.vector)
    assert sorted(round(float(r["area_m2"]), 2) for r in rows) == sorted(round(float(a), 2) for a in frame["area_m2"])
    assert shapely.union_all(shapely.from_wkt([r["wkt"] for r in rows])).equals(shapely.union_all(frame.geometry.values))


def test_vector_words_and_raster_switches_come_from_the_declarations(csv_format) -> None:
    assert vector_format_names() == ("geojson", "gpkg", "csv")
    with pytest.raises(InputError, match=f"--vector 'shp': choose geojson, gpkg, csv or {NO_VECTOR}"):
        VectorOptions(fmt="shp").check()
    with pytest.raises(ValueError, match="taken"):
        register_vector_format(VectorFormat("csv", "CSV", ".csv", "native CRS", lonlat=False, sink=f"{__name__}:CsvSink"))
    names = [output.name for output in switched_outputs()]
    assert names == ["confidence", "probabilities"]
    assert set(names) <= set(PredictOptions.__dataclass_fields__)  # the library's switch for each output
    assert output_markers() == (".mask", ".confidence", ".probabilities", ".stream")
    MapOptions(outputs=("probabilities",)).check()
    with pytest.raises(InputError, match="output 'entropy': choose from confidence, probabilities"):
        MapOptions(outputs=("entropy",)).check()
    paths = output_paths(Path("s.tif"), Path("out"), vector_format=None, probabilities=True)
    assert paths.probabilities == Path("out/s.probabilities.tif") and paths.confidence is None
    assert json.dumps([str(p) for p in paths.all()]) == json.dumps(["out/s.mask.tif", "out/s.probabilities.tif"])
