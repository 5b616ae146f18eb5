"""Many scenes: input expansion, output names, skipping, and a corrupt file failing alone."""

from __future__ import annotations

import os

import geopandas as gpd
import pytest
import rasterio
from predict_rasters import band_stats, class_table, pixel_model, random_scene, write_scene

from cegate_cli.errors import DataError, DataFileNotFoundError, InputError
from cegate_cli.predict import (
    BatchProgress,
    PredictOptions,
    VectorOptions,
    expand_inputs,
    output_paths,
    predict_many,
)

OPTIONS = PredictOptions(tile=64, overlap=16, batch_size=4)


def _scenes(folder, names, size=(70, 90)):
    return [write_scene(folder / name, random_scene(*size, seed=i)) for i, name in enumerate(names)]


def _run(inputs, out, **kwargs):
    kwargs.setdefault("options", OPTIONS)
    return predict_many(pixel_model(), inputs, out, bands=(1, 2, 3), stats=band_stats(3), class_table=class_table(4), **kwargs)


def test_expand_files_folders_and_globs(tmp_path):
    a, b = _scenes(tmp_path / "in", ["a.tif", "b.TIFF"])
    (tmp_path / "in" / "a.mask.tif").write_bytes(b"not an input")  # our own output, left out
    (tmp_path / "in" / "notes.txt").write_text("x")
    other = _scenes(tmp_path / "more", ["c.tif"])[0]
    assert expand_inputs([str(tmp_path / "in")]) == [a, b]
    assert expand_inputs([str(tmp_path / "*" / "*.tif")]) == [a, other]
    assert expand_inputs([other, str(tmp_path / "in"), str(a)]) == [other, a, b]  # duplicates dropped


@pytest.mark.parametrize("entry", ["missing.tif", "nothing-*.tif"])
def test_expand_names_what_matched_nothing(tmp_path, entry):
    with pytest.raises(DataFileNotFoundError, match="nothing-|missing"):
        expand_inputs([str(tmp_path / entry)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileNotFoundError, match="no .tif"):
        expand_inputs([str(tmp_path / "empty")])


def test_an_output_folder_among_the_inputs_is_left_out(tmp_path):
    """`cegate predict RUN scenes/* -o scenes/out`: the shell passes the output folder along."""
    a, b = _scenes(tmp_path / "scenes", ["a.tif", "b.tif"])
    (tmp_path / "scenes" / "out").mkdir()
    (tmp_path / "scenes" / "out" / "a.mask.tif").write_bytes(b"an earlier output")
    assert expand_inputs([str(a), str(b), str(tmp_path / "scenes" / "out")]) == [a, b]
    with pytest.raises(DataFileNotFoundError, match="only cegate's own outputs"):
        expand_inputs([str(tmp_path / "scenes" / "out")])


def test_output_names(tmp_path):
    paths = output_paths(tmp_path / "x" / "scene.tif", tmp_path / "out", vector_format="gpkg", confidence=True)
    assert paths.mask == tmp_path / "out" / "scene.mask.tif"
    assert paths.vector == tmp_path / "out" / "scene.gpkg"
    assert paths.confidence == tmp_path / "out" / "scene.confidence.tif"
    assert output_paths(tmp_path / "s.tif", tmp_path, vector_format=None, confidence=False).all() == [tmp_path / "s.mask.tif"]


def test_a_corrupt_file_fails_alone_with_a_clear_message(tmp_path):
    good = _scenes(tmp_path / "in", ["a.tif", "c.tif"])
    corrupt = tmp_path / "in" / "b.tif"
    corrupt.write_bytes(b"II*\x00" + os.urandom(2000))
    truncated = tmp_path / "in" / "d.tif"
    whole = write_scene(tmp_path / "whole.tif", random_scene(300, 300)).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    summary = _run(expand_inputs([str(tmp_path / "in")]), tmp_path / "out")
    assert [o.source.name for o in summary.done] == ["a.tif", "c.tif"]
    assert sorted(o.source.name for o in summary.failed) == ["b.tif", "d.tif"]
    assert not summary.ok
    for outcome in summary.failed:
        assert outcome.source.name in outcome.message
        assert "corrupt" in outcome.message or "cannot be read" in outcome.message
    produced = sorted(p.name for p in (tmp_path / "out").iterdir())
    expected = [f"{stem}{suffix}" for stem in "ac" for suffix in (".geojson", ".mask.qml", ".mask.tif", ".mask.tif.aux.xml", ".qml")]
    assert produced == expected  # nothing, not even a temp, for b and d
    assert len(gpd.read_file(tmp_path / "out" / "a.geojson")) > 0
    assert all(o.scene is not None and o.scene.mask_path.exists() for o in summary.done)
    assert good


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path):
    scenes = _scenes(tmp_path / "in", ["a.tif", "b.tif"])
    first = _run(scenes, tmp_path / "out", options=PredictOptions(tile=64, overlap=16, confidence=True))
    assert len(first.done) == 2
    mask = tmp_path / "out" / "a.mask.tif"
    stamp = mask.stat().st_mtime_ns
    again = _run(scenes, tmp_path / "out", options=PredictOptions(tile=64, overlap=16, confidence=True))
    assert len(again.skipped) == 2 and mask.stat().st_mtime_ns == stamp

    (tmp_path / "out" / "b.geojson").unlink()  # polygons missing: made again from the existing mask
    b_mask_stamp = (tmp_path / "out" / "b.mask.tif").stat().st_mtime_ns
    resumed = _run(scenes, tmp_path / "out", options=PredictOptions(tile=64, overlap=16, confidence=True))
    assert [o.source.name for o in resumed.done] == ["b.tif"] and resumed.done[0].scene is None
    assert (tmp_path / "out" / "b.geojson").exists()
    assert (tmp_path / "out" / "b.mask.tif").stat().st_mtime_ns == b_mask_stamp

    redone = _run(scenes, tmp_path / "out", options=PredictOptions(tile=64, overlap=16, confidence=True), overwrite=True)
    assert len(redone.done) == 2 and mask.stat().st_mtime_ns != stamp


def test_same_stem_from_two_folders_is_refused(tmp_path):
    a = _scenes(tmp_path / "x", ["s.tif"])[0]
    b = _scenes(tmp_path / "y", ["s.tif"])[0]
    with pytest.raises(InputError, match="s.mask.tif"):
        _run([a, b], tmp_path / "out")


def test_band_lookup_failure_fails_only_that_file_and_progress_is_reported(tmp_path):
    scenes = _scenes(tmp_path / "in", ["a.tif", "b.tif"])

    def bands(path):
        if path.name == "b.tif":
            raise DataError(f"{path}: no band named 'nir'")
        return (1, 2, 3)

    class Recorder(BatchProgress):
        def __init__(self):
            self.events = []

        def file_started(self, source, index, total_files, tiles):
            self.events.append(("start", source.name, index, total_files, tiles))

        def tiles_done(self, count):
            self.events.append(("tiles", count))

        def file_finished(self, outcome):
            self.events.append(("end", outcome.source.name, outcome.status))

    recorder = Recorder()
    summary = predict_many(
        pixel_model(),
        scenes,
        tmp_path / "out",
        bands=bands,
        stats=band_stats(3),
        class_table=class_table(4),
        options=OPTIONS,
        vectors=VectorOptions(fmt=None),
        progress=recorder,
    )
    assert summary.failed[0].message == f"{scenes[1]}: no band named 'nir'"
    starts = [e for e in recorder.events if e[0] == "start"]
    assert starts[0][1:4] == ("a.tif", 0, 2) and starts[0][4] == summary.done[0].scene.tiles
    assert sum(e[1] for e in recorder.events if e[0] == "tiles") == summary.done[0].scene.tiles
    assert [e for e in recorder.events if e[0] == "end"] == [("end", "a.tif", "done"), ("end", "b.tif", "failed")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mask.qml", "a.mask.tif", "a.mask.tif.aux.xml"]


def test_scene_without_crs_gets_a_mask_but_no_polygons(tmp_path):
    plain = write_scene(tmp_path / "plain.tif", random_scene(40, 40), crs=None, transform=None)
    summary = _run([plain], tmp_path / "out")
    (outcome,) = summary.done
    assert outcome.vectors is None and "no CRS" in outcome.scene.warnings[0]
    with rasterio.open(tmp_path / "out" / "plain.mask.tif") as mask:
        assert mask.crs is None
