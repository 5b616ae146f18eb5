"""STAC items as inputs: `predict RUN item.json`, a folder of items, and `adapt` on items, with
each band a separate asset (items built by pystac over real GeoTIFFs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.data.raster import open_raster
from cegate_cli.data.stac import read_item, scene_name
from cegate_cli.data.synthetic import make_demo_dataset
from cegate_cli.errors import DataError, DataFileNotFoundError
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.run import read_manifest

pytest.importorskip("pystac")  # a test dependency only: the items are built with it, cegate reads them without

from stac_items import item_over_bands, serving  # noqa: E402

TRAIN = TrainConfig(steps=4, batch_size=2, crop=32, warmup_steps=1, val_every=2, val_crops=2, save_every=4, fisher_samples=2, select="3", seed=0, device="cpu")
PREDICT = ["--tile", "48", "--overlap", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    """The demo folders, and the same scenes as STAC items: source/items (labeled: images/*.json
    beside masks/<id>.tif) and target/items/*.json, each band a single-band GeoTIFF asset."""
    root = tmp_path_factory.mktemp("stac")
    demo = make_demo_dataset(root / "demo", n_source=3, n_target=2, size=64, seed=4, n_target_eval=1)
    items = root / "source_items"
    shutil.copytree(demo.source_dir / "masks", items / "masks")
    shutil.copy(demo.source_dir / "classes.yaml", items / "classes.yaml")
    for image in sorted((demo.source_dir / "images").glob("*.tif")):
        # The file is named otherwise than the id: masks pair with the id (masks/<id>.tif).
        item_over_bands(image, items / "images" / f"item-{image.stem}.json", image.stem)
    targets = []
    for image in sorted((demo.target_dir / "images").glob("*.tif")):
        targets.append(item_over_bands(image, root / "target_items" / f"{image.stem}.stac.json", f"T-{image.stem}"))
    return demo, items, targets


@pytest.fixture(scope="module")
def run(data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo, _, _ = data
    return adapt(AdaptOptions(source=demo.source_dir, out=tmp_path_factory.mktemp("run") / "run", backbone="tiny", train=TRAIN)).run_dir


def test_an_item_reads_as_the_stacked_geotiff(data) -> None:
    demo, _, targets = data
    stack = sorted((demo.target_dir / "images").glob("*.tif"))[0]
    with rasterio.open(stack) as expected, open_raster(targets[0]) as item:
        assert item.descriptions == expected.descriptions == ("blue", "green", "red", "nir")
        assert (item.crs, item.transform, item.width, item.height) == (expected.crs, expected.transform, expected.width, expected.height)
        assert item.nodatavals == expected.nodatavals
        assert np.array_equal(item.read(), expected.read())
        window = rasterio.windows.Window(5, 7, 20, 11)
        assert np.array_equal(item.read([3, 1], window=window), expected.read([3, 1], window=window))
        assert item.tags()["ACQUISITIONDATETIME"].startswith("2024-05-17")  # Galileo reads the month from it


def test_predict_on_items_gives_the_masks_of_the_stacked_geotiffs(data, run: Path, tmp_path: Path) -> None:
    demo, _, targets = data
    runner = CliRunner()
    stacked = runner.invoke(app, ["predict", str(run), str(demo.target_dir / "images"), "-o", str(tmp_path / "stacked"), *PREDICT])
    assert stacked.exit_code == 0, stacked.output
    one = runner.invoke(app, ["predict", str(run), str(targets[0]), "-o", str(tmp_path / "one"), *PREDICT])
    assert one.exit_code == 0, one.output
    folder = runner.invoke(app, ["predict", str(run), str(targets[0].parent), "-o", str(tmp_path / "folder"), *PREDICT])
    assert folder.exit_code == 0, folder.output
    assert "2 done" in folder.output
    for item in targets:
        item_id = read_item(item).id
        stem = item_id.removeprefix("T-")
        mask = tmp_path / "folder" / f"{item_id}.mask.tif"  # named from the id, not from <stem>.stac.json
        assert mask.is_file() and (tmp_path / "folder" / f"{item_id}.geojson").is_file()
        with rasterio.open(mask) as got, rasterio.open(tmp_path / "stacked" / f"{stem}.mask.tif") as want:
            assert (got.crs, got.transform, got.shape) == (want.crs, want.transform, want.shape)
            assert np.array_equal(got.read(1), want.read(1))
    assert (tmp_path / "one" / f"{read_item(targets[0]).id}.mask.tif").is_file()


def test_adapt_on_a_folder_of_items_trains_like_the_stacked_folder(data, run: Path, tmp_path: Path) -> None:
    demo, items, targets = data
    result = adapt(AdaptOptions(source=items, out=tmp_path / "items-run", backbone="tiny", train=TRAIN))
    manifest, stacked = read_manifest(result.run_dir), read_manifest(run)
    assert manifest.status == "complete"
    assert manifest.bands.names == ("blue", "green", "red", "nir")
    assert manifest.normalization.mean == pytest.approx(stacked.normalization.mean)
    assert manifest.normalization.std == pytest.approx(stacked.normalization.std)
    assert [loss for _, loss in manifest.metrics.loss_history] == pytest.approx([loss for _, loss in stacked.metrics.loss_history], rel=1e-4)
    # The run made from items maps items and GeoTIFFs alike.
    out = CliRunner().invoke(app, ["predict", str(result.run_dir), str(targets[1]), "-o", str(tmp_path / "out"), *PREDICT, "--vector", "none"])
    assert out.exit_code == 0, out.output


def test_stac_1_1_bands_field_and_remote_hrefs_through_vsicurl(data, tmp_path: Path) -> None:
    demo, _, _ = data
    stack = sorted((demo.target_dir / "images").glob("*.tif"))[1]
    served = tmp_path / "served"
    with serving(served) as base:
        item = item_over_bands(
            stack,
            tmp_path / "remote.json",
            "remote",
            stac11=True,
            asset_folder=served,
            href_of=lambda path: f"{base}/{path.name}",
        )
        bands = read_item(item).bands
        assert all(band.href.startswith("/vsicurl?empty_dir=yes&url=http%3A%2F%2F127.0.0.1") for band in bands)
        assert all(band.shown.startswith(f"{base}/") for band in bands)
        with rasterio.open(stack) as expected, open_raster(item) as got:
            assert got.descriptions == expected.descriptions
            window = rasterio.windows.Window(3, 4, 30, 25)
            assert np.array_equal(got.read(window=window), expected.read(window=window))
    # A local file read after the remote item still has its sidecar mask (.msk): GDAL was told to
    # skip sidecars for the remote URLs alone, not for every file of the process.
    local = tmp_path / "local.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False):
        with rasterio.open(
            local, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs="EPSG:32633", transform=from_origin(500000, 5000000, 1, 1)
        ) as dst:
            dst.write(np.ones((1, 8, 8), np.uint8))
            dst.write_mask(np.pad(np.full((8, 4), 255, np.uint8), ((0, 0), (0, 4))))
    assert (tmp_path / "local.tif.msk").is_file()
    with open_raster(local) as dataset:
        assert int((dataset.dataset_mask() == 0).sum()) == 32


def _single_band(path: Path, values: np.ndarray, pixel: float, *, crs: str = "EPSG:32633", origin=(500000.0, 5000000.0)) -> None:
    profile = {
        "driver": "GTiff",
        "height": values.shape[0],
        "width": values.shape[1],
        "count": 1,
        "dtype": values.dtype.name,
        "crs": crs,
        "transform": from_origin(*origin, pixel, pixel),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)


def _item(path: Path, assets: dict[str, dict]) -> Path:
    path.write_text(
        json.dumps(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": path.stem,
                "geometry": None,
                "properties": {"datetime": "2023-01-02T00:00:00Z"},
                "links": [],
                "assets": assets,
            }
        )
    )
    return path


def test_coarser_bands_on_the_same_extent_are_resampled_onto_the_finest_grid(tmp_path: Path) -> None:
    fine = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40)
    coarse = np.arange(20 * 20, dtype=np.uint16).reshape(20, 20) + 7
    _single_band(tmp_path / "red.tif", fine, 10.0)
    _single_band(tmp_path / "swir.tif", coarse, 20.0)
    item = _item(
        tmp_path / "s2.json",
        {
            "B04": {"href": "red.tif", "type": "image/tiff", "roles": ["data"], "eo:bands": [{"name": "B04", "common_name": "red"}]},
            "B11": {"href": "swir.tif", "type": "image/tiff", "roles": ["data"], "eo:bands": [{"name": "B11", "common_name": "swir16"}]},
            "thumbnail": {"href": "missing.jpg", "type": "image/jpeg", "roles": ["thumbnail"]},
        },
    )
    with open_raster(item) as ds:
        assert ds.descriptions == ("red", "swir_1") and ds.shape == (40, 40) and ds.transform.a == 10.0
        assert np.array_equal(ds.read(1), fine)
        assert np.array_equal(ds.read(2), np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1))


def test_assets_on_different_grids_are_one_clear_error(tmp_path: Path) -> None:
    _single_band(tmp_path / "red.tif", np.ones((30, 30), np.uint16), 10.0)
    _single_band(tmp_path / "nir.tif", np.ones((30, 30), np.uint16), 10.0, origin=(500300.0, 5000000.0))
    item = _item(
        tmp_path / "shifted.json",
        {
            "red": {"href": "red.tif", "eo:bands": [{"name": "red"}]},
            "nir": {"href": "nir.tif", "eo:bands": [{"name": "nir"}]},
        },
    )
    with pytest.raises(DataError) as caught:
        open_raster(item)
    message = str(caught.value)
    assert str(item) in message and "'red'" in message and "'nir'" in message and "not on one grid" in message
    assert "\n" not in message


def test_the_single_band_data_asset_wins_over_a_visual_composite(tmp_path: Path) -> None:
    _single_band(tmp_path / "red.tif", np.full((8, 8), 5, np.uint16), 10.0)
    with rasterio.open(
        tmp_path / "visual.tif",
        "w",
        driver="GTiff",
        height=8,
        width=8,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500000.0, 5000000.0, 10.0, 10.0),
    ) as dst:
        dst.write(np.full((3, 8, 8), 200, np.uint8))
    item = _item(
        tmp_path / "mixed.json",
        {
            "visual": {
                "href": "visual.tif",
                "type": "image/tiff",
                "roles": ["visual"],
                "eo:bands": [{"name": "B04", "common_name": "red"}, {"name": "B03", "common_name": "green"}, {"name": "B02", "common_name": "blue"}],
            },
            "red": {"href": "red.tif", "type": "image/tiff", "roles": ["data"], "eo:bands": [{"name": "B04", "common_name": "red"}]},
        },
    )
    chosen = {band.name: (band.asset, band.band) for band in read_item(item).bands}
    assert chosen == {"blue": ("visual", 3), "green": ("visual", 2), "red": ("red", 1)}
    with open_raster(item) as ds:
        assert ds.descriptions == ("blue", "green", "red")
        assert ds.dtypes == ("uint16",) * 3  # one data type for the stack, wide enough for every band
        assert int(ds.read(3)[0, 0]) == 5


def test_item_problems_name_the_file_and_what_to_do(tmp_path: Path, data, run: Path) -> None:
    missing = _item(tmp_path / "missing.json", {"red": {"href": "nowhere/red.tif", "eo:bands": [{"name": "red"}]}})
    with pytest.raises(DataFileNotFoundError, match=r"missing\.json: asset 'red' \(.*nowhere/red\.tif\): no such file"):
        open_raster(missing)
    unnamed = _item(tmp_path / "unnamed.json", {"data": {"href": "x.tif"}})
    with pytest.raises(DataError, match=r"unnamed\.json: no asset .* names its bands"):
        read_item(unnamed)
    collection = tmp_path / "collection.json"
    collection.write_text(json.dumps({"type": "Collection", "id": "c", "links": []}))
    with pytest.raises(DataError, match=r"collection\.json: not a STAC item \(type 'Collection'"):
        read_item(collection)
    assert scene_name(collection) == "collection" and scene_name(unnamed) == "unnamed"
    # Given to predict, a broken item fails alone with its one-line reason; other JSON in a folder is not a scene.
    demo, _, targets = data
    folder = tmp_path / "items"
    folder.mkdir()
    shutil.copy(targets[0], folder / targets[0].name)
    shutil.copytree(targets[0].parent / "assets", folder / "assets")
    (folder / "notes.json").write_text('{"comment": "not an item"}')
    result = CliRunner().invoke(app, ["predict", str(run), str(folder), str(missing), "-o", str(tmp_path / "out"), *PREDICT, "--vector", "none"])
    assert result.exit_code == 1
    assert "1 done, 0 skipped, 1 failed" in result.output and "missing.json: asset 'red'" in result.output
    stem = read_item(targets[0]).id
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{stem}.mask.qml", f"{stem}.mask.tif", f"{stem}.mask.tif.aux.xml"]
