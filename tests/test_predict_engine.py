"""predict_scene on real GeoTIFFs with real torch models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from predict_rasters import (
    ConstantLogits,
    band_stats,
    class_table,
    pixel_model,
    random_scene,
    whole_image_classes,
    write_scene,
)
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from cegate_cli.errors import DataError, InputError
from cegate_cli.predict import predict_scene

STATS = band_stats(3)


def _predict(model, src, dst, classes=4, **kwargs):
    kwargs.setdefault("tile", 64)
    kwargs.setdefault("overlap", 16)
    return predict_scene(model, src, dst, band_indexes=(1, 2, 3), stats=STATS, class_table=class_table(classes), **kwargs)


@pytest.mark.parametrize("height,width,multiple_of", [(203, 151, 16), (37, 23, 16), (300, 64, 1), (1, 90, 8)])
def test_per_pixel_model_matches_one_whole_image_pass(tmp_path, height, width, multiple_of):
    """No seams: tiling, padding and blending change nothing for a model without spatial context."""
    data = random_scene(height, width, seed=height)
    src = write_scene(tmp_path / "scene.tif", data)
    model = pixel_model()
    result = _predict(model, src, tmp_path / "scene.mask.tif", multiple_of=multiple_of, batch_size=3)
    with rasterio.open(result.mask_path) as mask:
        predicted = mask.read(1)
    np.testing.assert_array_equal(predicted, whole_image_classes(model, data, STATS))
    assert (result.width, result.height) == (width, height)
    assert sum(result.class_counts.values()) == height * width and result.nodata_pixels == 0


def test_mask_has_exactly_the_input_grid(tmp_path):
    transform = from_origin(612345.678, 4998765.4321, 0.3, 0.3)
    src = write_scene(tmp_path / "scene.tif", random_scene(130, 170), crs="EPSG:32617", transform=transform)
    result = _predict(pixel_model(), src, tmp_path / "out" / "scene.mask.tif")
    with rasterio.open(src) as scene, rasterio.open(result.mask_path) as mask:
        assert mask.crs.to_wkt() == scene.crs.to_wkt()
        assert mask.transform == scene.transform  # bit for bit, not almost
        assert (mask.width, mask.height) == (scene.width, scene.height)
        assert mask.dtypes[0] == "uint8" and mask.nodata == 255
    assert result.crs == "EPSG:32617" and result.warnings == ()


def test_constant_logits_give_a_constant_mask_and_confidence_without_seams(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(250, 190))
    model = ConstantLogits([0.0, 2.0, 0.5, -1.0])
    result = _predict(model, src, tmp_path / "m.tif", confidence_path=tmp_path / "c.tif")
    with rasterio.open(result.mask_path) as mask, rasterio.open(result.confidence_path) as conf:
        assert np.unique(mask.read(1)).tolist() == [1]
        expected = round(100 * torch.softmax(torch.tensor([0.0, 2.0, 0.5, -1.0]), 0).max().item())
        assert np.unique(conf.read(1)).tolist() == [expected]  # weights are normalised everywhere
        assert conf.transform == mask.transform and conf.nodata == 255
    assert result.class_counts == {1: 250 * 190}


def test_nodata_in_any_band_and_dataset_masks_become_255(tmp_path):
    data = random_scene(120, 140)
    data[1, 10:20, 30:50] = 0  # nodata value in one band only
    src = write_scene(tmp_path / "scene.tif", data, nodata=0)
    result = _predict(pixel_model(), src, tmp_path / "m.tif", confidence_path=tmp_path / "c.tif")
    with rasterio.open(result.mask_path) as mask, rasterio.open(tmp_path / "c.tif") as conf:
        out, confidence = mask.read(1), conf.read(1)
    assert (out[10:20, 30:50] == 255).all() and (confidence[10:20, 30:50] == 255).all()
    assert (out[20:] != 255).all() and confidence[20:].max() <= 100
    assert result.nodata_pixels == 200

    masked = write_scene(tmp_path / "masked.tif", random_scene(120, 140))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "r+") as ds:
        dataset_mask = np.full((120, 140), 255, dtype=np.uint8)
        dataset_mask[:, :7] = 0
        ds.write_mask(dataset_mask)
    result = _predict(pixel_model(), masked, tmp_path / "m2.tif")
    with rasterio.open(result.mask_path) as mask:
        out = mask.read(1)
    assert (out[:, :7] == 255).all() and (out[:, 7:] != 255).all()


def test_nan_in_a_float_band_is_nodata(tmp_path):
    data = random_scene(70, 80).astype(np.float32)
    data[2, 5, 5] = np.nan
    src = write_scene(tmp_path / "scene.tif", data)
    result = _predict(pixel_model(), src, tmp_path / "m.tif")
    with rasterio.open(result.mask_path) as mask:
        out = mask.read(1)
    assert out[5, 5] == 255 and result.nodata_pixels == 1


def test_scene_without_crs_still_gets_a_mask_and_a_warning(tmp_path):
    src = write_scene(tmp_path / "plain.tif", random_scene(60, 50), crs=None, transform=None)
    result = _predict(pixel_model(), src, tmp_path / "m.tif")
    assert result.crs is None
    assert result.warnings and "no CRS" in result.warnings[0]
    with rasterio.open(src) as scene, rasterio.open(result.mask_path) as mask:
        assert mask.crs is None and mask.transform == scene.transform
        assert mask.read(1).shape == (60, 50)


def test_geographic_scene_works_like_any_other(tmp_path):
    transform = from_origin(12.5, 41.9, 0.0001, 0.0001)
    data = random_scene(90, 110)
    src = write_scene(tmp_path / "wgs84.tif", data, crs="EPSG:4326", transform=transform)
    model = pixel_model()
    result = _predict(model, src, tmp_path / "m.tif")
    with rasterio.open(result.mask_path) as mask:
        assert mask.crs.to_epsg() == 4326 and mask.transform == transform
        np.testing.assert_array_equal(mask.read(1), whole_image_classes(model, data, STATS))


def test_mask_carries_colours_class_names_and_overviews(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(600, 330))
    result = _predict(pixel_model(), src, tmp_path / "m.tif", tile=128, overlap=32, batch_size=8)
    with rasterio.open(result.mask_path) as mask:
        assert mask.colorinterp[0] == ColorInterp.palette
        colors = mask.colormap(1)
        assert colors[0] == (0, 0, 255, 255) and colors[2] == (255, 255, 0, 255)
        assert colors[255][3] == 0  # nodata is transparent
        tags = mask.tags()
        assert tags["CLASS_0"] == "water" and tags["CLASS_3"] == "urban"
        assert json.loads(tags["CEGATE_CLASSES"])["classes"][1]["name"] == "forest"
        assert mask.descriptions[0] == "class"
        assert mask.overviews(1) == [2, 4]
        assert mask.profile["tiled"] and mask.profile["compress"] == "deflate"
        assert mask.block_shapes[0] == (256, 256)
        overview = mask.read(1, out_shape=(150, 83))  # read from an overview level
        assert set(np.unique(overview)) <= set(range(4))


def test_wrong_class_count_is_a_clear_error_and_leaves_no_file(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(50, 50))
    with pytest.raises(InputError, match="3 class scores"):
        _predict(pixel_model(num_classes=3), src, tmp_path / "m.tif", classes=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


class FailsLater(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.inner = pixel_model()

    def forward(self, x):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom")
        return self.inner(x)


def test_failure_half_way_leaves_nothing_under_the_final_name(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(300, 300))
    with pytest.raises(RuntimeError, match="boom"):
        _predict(FailsLater(), src, tmp_path / "m.tif", confidence_path=tmp_path / "c.tif", batch_size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]  # no mask, no temporary files


def test_progress_counts_every_tile_and_model_mode_is_restored(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(150, 200))
    model = torch.nn.Sequential(pixel_model(), torch.nn.Dropout(0.9))
    model.train()
    seen = []
    result = _predict(model, src, tmp_path / "m.tif", batch_size=5, progress=seen.append)
    assert sum(seen) == result.tiles and max(seen) <= 5
    assert model.training  # restored
    with rasterio.open(result.mask_path) as mask:  # dropout was off during prediction
        np.testing.assert_array_equal(mask.read(1), whole_image_classes(model.eval(), random_scene(150, 200), STATS))


def test_missing_band_and_wrong_statistics_are_reported(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(40, 40, bands=2))
    with pytest.raises(DataError, match="has 2 band"):
        _predict(pixel_model(), src, tmp_path / "m.tif")
    src3 = write_scene(tmp_path / "three.tif", random_scene(40, 40))
    with pytest.raises(InputError, match="statistics"):
        predict_scene(pixel_model(), src3, tmp_path / "m.tif", band_indexes=(1, 2), stats=STATS, class_table=class_table(4))


def test_bfloat16_autocast_runs_on_cpu(tmp_path):
    data = random_scene(64, 64)
    src = write_scene(tmp_path / "scene.tif", data)
    model = ConstantLogits([0.0, 0.0, 5.0, 0.0])
    result = _predict(model, src, tmp_path / "m.tif", autocast_dtype=torch.bfloat16)
    assert result.class_counts == {2: 64 * 64}


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_scene_georeferenced_by_gcps_passes_them_to_the_mask(tmp_path):
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    src = write_scene(tmp_path / "gcp.tif", random_scene(40, 50), crs=None, transform=None)
    gcps = [GroundControlPoint(r, c, 500000.0 + 10 * c, 5000000.0 - 10 * r) for r, c in ((0, 0), (0, 50), (40, 0), (40, 50))]
    with rasterio.open(src, "r+") as ds:
        ds.gcps = (gcps, CRS.from_epsg(32633))
    result = _predict(pixel_model(), src, tmp_path / "m.tif")
    assert "ground control points" in result.warnings[0]
    with rasterio.open(result.mask_path) as mask:
        points, crs = mask.gcps
        assert crs.to_epsg() == 32633
        assert [(p.row, p.col, p.x, p.y) for p in points] == [(p.row, p.col, p.x, p.y) for p in gcps]


def test_output_may_not_overwrite_the_input(tmp_path):
    src = write_scene(tmp_path / "scene.tif", random_scene(30, 30))
    with pytest.raises(InputError, match="overwrite the input"):
        _predict(pixel_model(), src, src)


def test_count_tiles_matches_the_run(tmp_path):
    from cegate_cli.predict import count_tiles

    src = write_scene(tmp_path / "scene.tif", random_scene(200, 130))
    result = _predict(pixel_model(), src, tmp_path / "m.tif", tile=64, overlap=16)
    assert count_tiles(src, tile=64, overlap=16) == result.tiles == 4 * 3  # rows 0, 48, 96, 144; columns 0, 48, 96
