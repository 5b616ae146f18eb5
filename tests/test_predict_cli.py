"""`cegate predict` / `evaluate` / `demo` on a real (tiny) run folder, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.data.synthetic import make_demo_dataset
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt

TRAIN = TrainConfig(steps=4, batch_size=2, crop=32, warmup_steps=1, val_every=4, val_crops=2, save_every=4, fisher_samples=2, select="3", seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cli")
    data = make_demo_dataset(root / "data", n_source=2, n_target=2, size=72, seed=2, n_target_eval=2)
    result = adapt(AdaptOptions(source=data.source_dir, out=root / "run", backbone="tiny", train=TRAIN))
    return data, result.run_dir


def test_predict_writes_georeferenced_masks_and_polygons(trained, tmp_path: Path) -> None:
    data, run = trained
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(run), str(data.target_dir / "images"), "-o", str(out), "--tile", "48", "--overlap", "8", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    scenes = sorted((data.target_dir / "images").glob("*.tif"))
    for scene in scenes:
        mask = out / f"{scene.stem}.mask.tif"
        with rasterio.open(scene) as src, rasterio.open(mask) as dst:
            assert dst.crs == src.crs and dst.transform == src.transform and (dst.width, dst.height) == (src.width, src.height)
            assert dst.nodata == 255 and dst.dtypes[0] == "uint8"
            labels = dst.read(1)
            valid = src.dataset_mask() > 0
            assert np.all(labels[~valid] == 255)
            assert set(np.unique(labels[valid])) <= {0, 1, 2, 3}
        polygons = gpd.read_file(out / f"{scene.stem}.geojson")
        assert {"class_id", "class_name", "area_m2"} <= set(polygons.columns)
        assert polygons.crs.to_epsg() == 4326
    # A second run skips existing outputs; --overwrite redoes them.
    again = runner.invoke(app, ["predict", str(run), str(scenes[0]), "-o", str(out), "--tile", "48", "--overlap", "8"])
    assert again.exit_code == 0 and "1 skipped" in again.output


def test_maps_of_another_run_are_not_kept_as_this_runs(trained, tmp_path: Path) -> None:
    """A retrained run predicting into a folder of an earlier run's masks must not skip them as its
    own: it refuses before mapping (exit 2, nothing touched) and --overwrite replaces them."""
    data, run = trained
    scene = sorted((data.target_dir / "images").glob("*.tif"))[0]
    out = tmp_path / "out"
    args = [str(scene), "-o", str(out), "--tile", "48", "--overlap", "8", "--vector", "none"]
    assert CliRunner().invoke(app, ["predict", str(run), *args]).exit_code == 0
    mask = out / f"{scene.stem}.mask.tif"
    first_id = json.loads((run / "run.json").read_text())["run_id"]
    with rasterio.open(mask) as dataset:
        assert dataset.tags()["CEGATE_RUN"] == first_id
    # The same run again: its own maps are skipped, as before.
    again = CliRunner().invoke(app, ["predict", str(run), *args])
    assert again.exit_code == 0 and "1 skipped" in again.output
    retrained = adapt(AdaptOptions(source=data.source_dir, out=tmp_path / "run2", backbone="tiny", train=TRAIN)).run_dir
    before = mask.read_bytes()
    refused = CliRunner().invoke(app, ["predict", str(retrained), *args])
    assert refused.exit_code == 2, refused.output
    line = " ".join(refused.output.split())
    assert "made by another run" in line and "--overwrite" in line and mask.name in line
    assert mask.read_bytes() == before
    replaced = CliRunner().invoke(app, ["predict", str(retrained), *args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    with rasterio.open(mask) as dataset:
        assert dataset.tags()["CEGATE_RUN"] == json.loads((retrained / "run.json").read_text())["run_id"] != first_id


def test_one_bad_scene_fails_alone(trained, tmp_path: Path) -> None:
    data, run = trained
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff at all")
    good = sorted((data.target_dir / "images").glob("*.tif"))[0]
    result = CliRunner().invoke(
        app, ["predict", str(run), str(good), str(bad), "-o", str(tmp_path / "o"), "--tile", "48", "--overlap", "8", "--vector", "none"]
    )
    assert result.exit_code == 1
    assert "broken.tif" in result.output and "1 done" in result.output and "1 failed" in result.output
    assert (tmp_path / "o" / f"{good.stem}.mask.tif").is_file()
    assert not (tmp_path / "o" / "broken.mask.tif").exists()


def test_predict_probabilities_and_the_documented_min_area_default(trained, tmp_path: Path) -> None:
    from cegate_cli.predict.vector_options import VectorOptions

    data, run = trained
    scene = sorted((data.target_dir / "images").glob("*.tif"))[0]
    out = tmp_path / "o"
    args = ["predict", str(run), str(scene), "-o", str(out), "--tile", "48", "--overlap", "8", "--vector", "gpkg", "--probabilities"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    probabilities = out / f"{scene.stem}.probabilities.tif"
    assert str(probabilities) in result.stdout
    with rasterio.open(probabilities) as bands, rasterio.open(out / f"{scene.stem}.mask.tif") as mask:
        assert bands.descriptions == ("water", "vegetation", "built-up", "bare soil")
        assert bands.transform == mask.transform and bands.nodata == 255
        assert (bands.read()[:, mask.read(1) == 255] == 255).all()
    assert (out / f"{scene.stem}.mask.qml").is_file() and (out / f"{scene.stem}.mask.tif.aux.xml").is_file()
    help_text = " ".join(CliRunner().invoke(app, ["predict", "--help"], env={"COLUMNS": "200"}).output.split())
    assert f"[default: {VectorOptions().min_area_m2}]" in help_text


def test_predict_vector_merge_writes_one_layer_for_the_batch(trained, tmp_path: Path) -> None:
    data, run = trained
    scenes = sorted((data.target_dir / "images").glob("*.tif"))
    out = tmp_path / "o"
    args = ["predict", str(run), *map(str, scenes), "-o", str(out), "--tile", "48", "--overlap", "8", "--vector", "gpkg", "--vector-merge"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    merged = out / "polygons.gpkg"
    assert str(merged) in result.stdout.splitlines() and (out / "polygons.qml").is_file()
    frame = gpd.read_file(merged, layer="polygons")
    assert list(dict.fromkeys(frame["scene"])) == [scene.stem for scene in scenes]
    assert len(frame) == sum(len(gpd.read_file(out / f"{scene.stem}.gpkg", layer=scene.stem)) for scene in scenes)
    again = CliRunner().invoke(app, [*args, "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["skipped"] == len(scenes) and report["merged"] == {
        "path": str(merged),
        "status": "skipped",
        "message": f"{merged}: exists (use --overwrite to redo)",
        "scenes": None,
        "polygons": None,
        "crs": None,
        "reprojected": [],
    }
    refused = CliRunner().invoke(app, ["predict", str(run), str(scenes[0]), "-o", str(out), "--vector", "none", "--vector-merge"])
    assert refused.exit_code == 2 and "Error: --vector-merge merges the scenes' polygons" in refused.output


def test_many_scenes_with_the_same_note_share_one_line(trained, tmp_path: Path) -> None:
    """Scenes whose last band is tagged alpha but read as data (NAIP's habit): said once for the
    batch, naming the first scenes, not once per scene; a note, not a warning."""
    from rasterio.enums import ColorInterp

    data, run = trained
    source = sorted((data.target_dir / "images").glob("*.tif"))[0]
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for i in range(7):
        copy = scenes / f"s{i}.tif"
        copy.write_bytes(source.read_bytes())
        with rasterio.open(copy, "r+") as dst:
            dst.colorinterp = [*dst.colorinterp[:-1], ColorInterp.alpha]
    result = CliRunner().invoke(app, ["predict", str(run), str(scenes), "-o", str(tmp_path / "o"), "--tile", "48", "--overlap", "8", "--vector", "none"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "tagged as alpha" in line]
    assert len(said) == 1, said
    assert said[0].startswith("note: 7 images (s0.tif, s1.tif, s2.tif, s3.tif, s4.tif and 2 more): each band ")


def test_evaluate_prints_per_class_iou_and_json(trained) -> None:
    data, run = trained
    runner = CliRunner()
    table = runner.invoke(app, ["evaluate", str(run), str(data.target_labels_dir), "--tile", "48", "--overlap", "8"])
    assert table.exit_code == 0, table.output
    assert "mIoU" in table.output and "water" in table.output
    as_json = runner.invoke(app, ["evaluate", str(run), str(data.target_labels_dir), "--tile", "48", "--overlap", "8", "--json"])
    report = json.loads(as_json.stdout)
    assert 0.0 <= report["miou"] <= 1.0
    assert [c["name"] for c in report["classes"]] == ["water", "vegetation", "built-up", "bare soil"]
    assert len(report["files"]) == 2


def test_evaluate_names_a_wrong_test_folder_before_loading_the_model(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cegate_cli.pipelines import inference

    def never(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the test folder was checked")

    monkeypatch.setattr(inference, "load_for_inference", never)
    _, run = trained
    result = CliRunner().invoke(app, ["evaluate", str(run), str(tmp_path / "no-such-folder")])
    assert result.exit_code == 2 and "no-such-folder" in result.output


def test_predict_on_a_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "nope"), str(tmp_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not a cegate run folder" in result.output


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "demo"), "--steps", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "target mIoU" in result.output
    assert list((tmp_path / "demo" / "predictions").glob("*.mask.tif"))
    manifest = json.loads((tmp_path / "demo" / "run" / "run.json").read_text())
    # The demo shows adaptation: the unlabeled target folder takes part in training.
    assert manifest["mode"] == "source+target"
    assert manifest["adaptation"]["target"] == str((tmp_path / "demo" / "data" / "target").resolve())
    assert "labeled source + unlabeled target" in result.output
    # The demo's polygons follow predict's default minimum area (one default, VectorOptions).
    from cegate_cli.predict import VectorOptions, vectorize_mask
    from cegate_cli.run import read_manifest

    mask = sorted((tmp_path / "demo" / "predictions").glob("*.mask.tif"))[0]
    shown = json.loads(mask.with_name(mask.name.replace(".mask.tif", ".geojson")).read_text())["features"]
    classes = read_manifest(tmp_path / "demo" / "run").classes
    again = vectorize_mask(mask, tmp_path / "again.geojson", class_table=classes, min_area_m2=VectorOptions().min_area_m2)
    assert len(shown) == again.features
