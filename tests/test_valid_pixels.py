"""One rule for which pixels are valid: training, band statistics, predict and evaluate agree.

A pixel is valid only where every band the run uses is valid (its nodata value, NaN, the file's
internal/per-dataset mask or alpha band). Before, training kept a pixel if ANY band was valid,
predict dropped it if any band was nodata and evaluate looked at band 1 only, so a 2-band scene
with nodata in half of band 2 trained on 64 of 64 pixels and predicted 32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from data_rasters import write_tif
from predict_rasters import ConstantLogits
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from cegate_cli.data.classes import ClassInfo, ClassTable
from cegate_cli.data.crops import CropSampler, CropWindow
from cegate_cli.data.folder import ImagePair
from cegate_cli.data.metrics import evaluate_scene
from cegate_cli.data.stats import BandStats, compute_band_stats
from cegate_cli.data.windows import read_image_window
from cegate_cli.predict.engine import predict_scene
from cegate_cli.predict.reader import SceneReader
from cegate_cli.predict.tiling import plan_tiles

STATS = BandStats(("a", "b"), (100.0, 100.0), (10.0, 10.0))
TABLE = ClassTable((ClassInfo(0, "one", (0, 0, 255)), ClassInfo(1, "two", (0, 255, 0))))


def _training_valid(path: Path, bands: tuple[int, ...]) -> np.ndarray:
    with rasterio.open(path) as ds:
        return read_image_window(ds, bands, Window(0, 0, ds.width, ds.height))[1]


def _crop_valid(path: Path, mask: Path, bands: tuple[int, ...], size: int) -> tuple[np.ndarray, np.ndarray]:
    stats = BandStats(tuple(f"b{b}" for b in bands), (100.0,) * len(bands), (10.0,) * len(bands))
    with CropSampler([ImagePair(path, mask)], [bands], stats, crop=size, ignore_index=255, augment=False) as sampler:
        batch = sampler.read([CropWindow(0, 0, 0)])
    return batch.valid[0].numpy(), batch.masks[0].numpy() != 255


def _predict_valid(path: Path, bands: tuple[int, ...]) -> np.ndarray:
    stats = BandStats(tuple(f"b{b}" for b in bands), (100.0,) * len(bands), (10.0,) * len(bands))
    with rasterio.open(path) as ds:
        (tile,) = list(plan_tiles(ds.height, ds.width, tile=max(ds.height, ds.width), overlap=0))
        return SceneReader(ds, path, bands, stats).read(tile)[1][: ds.height, : ds.width]


def _evaluate_counted(path: Path, labels: Path, bands: tuple[int, ...], tmp_path: Path) -> tuple[int, np.ndarray]:
    """Pixels evaluate counts for the scene, and where its predicted mask holds a class."""
    stats = BandStats(tuple(f"b{b}" for b in bands), (100.0,) * len(bands), (10.0,) * len(bands))
    mask = tmp_path / "pred.mask.tif"
    predict_scene(ConstantLogits([2.0, 0.0]), path, mask, band_indexes=bands, stats=stats, class_table=TABLE, tile=16, overlap=0)
    matrix = evaluate_scene(mask, labels, num_classes=2, ignore_index=255)
    with rasterio.open(mask) as ds:
        predicted = ds.read(1) != 255
    return matrix.total, predicted


def test_two_bands_with_nodata_in_half_of_band_two_agree_everywhere(tmp_path: Path) -> None:
    """The case from issue 13: training, statistics, predict and evaluate see the same 32 pixels."""
    image = np.full((2, 8, 8), 120, np.uint16)
    image[1, :, :4] = 0  # band 2 is nodata in its left half; band 1 is data everywhere
    path = write_tif(tmp_path / "scene.tif", image, nodata=0)
    labels = write_tif(tmp_path / "labels.tif", np.zeros((8, 8), np.uint8))
    expected = np.zeros((8, 8), bool)
    expected[:, 4:] = True

    training = _training_valid(path, (1, 2))
    crop_valid, crop_labeled = _crop_valid(path, labels, (1, 2), 8)
    predict = _predict_valid(path, (1, 2))
    counted, predicted = _evaluate_counted(path, labels, (1, 2), tmp_path)

    assert int(training.sum()) == 32 and np.array_equal(training, expected)
    assert np.array_equal(crop_valid, expected) and np.array_equal(crop_labeled, expected)  # no label where a band is missing
    assert np.array_equal(predict, expected)
    assert counted == 32 and np.array_equal(predicted, expected)
    # Band statistics use the same pixels: band 1's 32 valid values are all 120, band 2's too.
    stats = compute_band_stats([path], [(1, 2)], ("a", "b"))
    assert stats.mean == (120.0, 120.0)


def _per_dataset_mask(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path = tmp_path / "masked.tif"
    data = np.full((2, 8, 8), 130, np.uint16)
    expected = np.ones((8, 8), bool)
    expected[:3] = False
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=2, dtype="uint16") as dst:
            dst.write(data)
            dst.write_mask(expected.astype(np.uint8) * 255)
    return path, expected


def _nan_in_one_band(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.full((2, 8, 8), 1.5, np.float32)
    data[0, 2, 3] = np.nan
    data[1, 5, :] = np.inf
    data[1, 6, 6] = -9999.0
    expected = np.ones((8, 8), bool)
    expected[2, 3] = expected[5, :] = expected[6, 6] = False
    return write_tif(tmp_path / "nan.tif", data, nodata=-9999.0), expected


def _nan_nodata(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.full((2, 8, 8), 2.0, np.float64)
    data[1, :, 7] = np.nan
    expected = np.ones((8, 8), bool)
    expected[:, 7] = False
    return write_tif(tmp_path / "nannodata.tif", data, nodata=float("nan")), expected


def _alpha_band(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path = tmp_path / "rgba.tif"
    data = np.full((4, 8, 8), 90, np.uint8)
    data[3] = 255
    data[3, 4:, :2] = 0
    expected = data[3] != 0
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=4, dtype="uint8") as dst:
        dst.write(data)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    with rasterio.open(path) as ds:
        assert ds.mask_flag_enums[0] != [rasterio.enums.MaskFlags.all_valid]  # GDAL reads band 4 as the alpha mask
    return path, expected


@pytest.mark.parametrize("make", [_per_dataset_mask, _nan_in_one_band, _nan_nodata, _alpha_band])
def test_every_way_of_marking_nodata_gives_the_same_pixels_in_training_and_predict(tmp_path: Path, make) -> None:
    path, expected = make(tmp_path)
    labels = write_tif(tmp_path / "labels.tif", np.zeros((8, 8), np.uint8))
    bands = (1, 2)
    assert np.array_equal(_training_valid(path, bands), expected)
    assert np.array_equal(_crop_valid(path, labels, bands, 8)[0], expected)
    assert np.array_equal(_predict_valid(path, bands), expected)
    counted, predicted = _evaluate_counted(path, labels, bands, tmp_path)
    assert counted == int(expected.sum()) and np.array_equal(predicted, expected)


def test_nodata_an_integer_band_cannot_hold_masks_nothing(tmp_path: Path) -> None:
    """GDAL's rule: nodata 0.5 on int16 matches no pixel, so the 0s stay valid (predict used to
    truncate 0.5 to 0 and drop them)."""
    data = np.zeros((1, 4, 4), np.int16)
    path = write_tif(tmp_path / "half.tif", data, nodata=0.5)
    with rasterio.open(path) as ds:
        assert ds.read_masks(1).all()  # what GDAL says
    assert _training_valid(path, (1,)).all() and _predict_valid(path, (1,)).all()


def test_complex_bands_are_refused_in_words(tmp_path: Path) -> None:
    from cegate_cli.data.raster import PixelValidity
    from cegate_cli.errors import DataError

    path = write_tif(tmp_path / "complex.tif", np.ones((1, 4, 4), np.complex64))
    with rasterio.open(path) as ds, pytest.raises(DataError, match=r"complex numbers .*convert them"):
        PixelValidity(ds, (1,))


def _naip_rgbn(path: Path, *, internal_mask: np.ndarray | None = None) -> tuple[Path, np.ndarray]:
    """A NAIP-style R, G, B, NIR GeoTIFF whose NIR band is tagged alpha, with NIR = 0 in a corner."""
    data = np.full((4, 8, 8), 90, np.uint8)
    data[3, :3, :3] = 0  # NIR 0: water, shadow; data, not transparency
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=4, dtype="uint8") as dst:
            dst.write(data)
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
            if internal_mask is not None:
                dst.write_mask(internal_mask.astype(np.uint8) * 255)
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3] == ColorInterp.alpha
    return path, data


def test_an_alpha_tagged_band_the_run_reads_is_data_not_a_mask(tmp_path: Path) -> None:
    """NAIP tags NIR as alpha: read as R, G, B, NIR, its zeros stay valid in training, the image
    checks, predict and evaluate alike (they used to be nodata)."""
    path, _ = _naip_rgbn(tmp_path / "naip.tif")
    labels = write_tif(tmp_path / "labels.tif", np.zeros((8, 8), np.uint8), crs=None, transform=None)
    bands = (1, 2, 3, 4)
    everywhere = np.ones((8, 8), bool)
    assert np.array_equal(_training_valid(path, bands), everywhere)
    assert np.array_equal(_crop_valid(path, labels, bands, 8)[0], everywhere)
    assert np.array_equal(_predict_valid(path, bands), everywhere)
    counted, predicted = _evaluate_counted(path, labels, bands, tmp_path)
    assert counted == 64 and predicted.all()
    stats = compute_band_stats([path], [bands], ("r", "g", "b", "nir"))
    assert stats.mean[3] < 90.0  # the NIR zeros are counted in its statistics


def test_an_alpha_band_the_run_does_not_read_still_masks(tmp_path: Path) -> None:
    """Reading R, G, B only, band 4 is no data of the run and keeps its meaning: transparency."""
    path, data = _naip_rgbn(tmp_path / "naip.tif")
    assert np.array_equal(_training_valid(path, (1, 2, 3)), data[3] != 0)
    assert np.array_equal(_predict_valid(path, (1, 2, 3)), data[3] != 0)


def test_an_internal_mask_still_masks_when_the_alpha_band_is_data(tmp_path: Path) -> None:
    mask = np.ones((8, 8), bool)
    mask[7] = False
    path, _ = _naip_rgbn(tmp_path / "naip.tif", internal_mask=mask)
    assert np.array_equal(_training_valid(path, (1, 2, 3, 4)), mask)
    assert np.array_equal(_predict_valid(path, (1, 2, 3, 4)), mask)


def test_the_alpha_band_read_as_data_is_said_once(tmp_path: Path) -> None:
    """One note for the whole folder in adapt, naming the band and what was done; one per scene in
    predict. A note, not a warning: nothing is wrong with such a file."""
    from cegate_cli.data.folder import check_image_contents

    paths = [_naip_rgbn(tmp_path / "images" / f"t{i}.tif")[0] for i in range(7)]
    contents = check_image_contents(paths, [(1, 2, 3, 4)] * len(paths), crop=8, root=tmp_path)
    said = [n for n in contents.notes if "alpha" in n]
    assert len(said) == 1
    assert said[0].startswith("7 image(s) (images/t0.tif") and "band 4 is tagged as alpha" in said[0]
    assert "reads it as data, not as a nodata mask" in said[0]
    assert not [w for w in contents.warnings if "alpha" in w]
    rgb_only = check_image_contents(paths, [(1, 2, 3)] * len(paths), crop=8, root=tmp_path)
    assert not rgb_only.warnings and not rgb_only.notes

    stats = BandStats(("r", "g", "b", "nir"), (100.0,) * 4, (10.0,) * 4)
    scene = predict_scene(
        ConstantLogits([2.0, 0.0]),
        paths[0],
        tmp_path / "t0.mask.tif",
        band_indexes=(1, 2, 3, 4),
        stats=stats,
        class_table=TABLE,
        tile=4,
        overlap=0,
    )
    assert [n for n in scene.notes if "alpha" in n] == [f"t0.tif: {said[0].split(': ', 1)[1]}"]
    assert not [w for w in scene.warnings if "alpha" in w]


def test_adapt_and_predict_on_naip_style_files_print_a_note_and_no_warning(tmp_path: Path) -> None:
    """Healthy R, G, B, NIR files whose NIR is tagged alpha: `adapt` and `predict` say once what
    they did as "note:", print no "warning:" line, and keep the note out of the warnings they record."""
    import json

    from typer.testing import CliRunner

    from cegate_cli.cli import app

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    half = np.zeros((32, 32), np.uint8)
    half[:, 16:] = 1
    for stem in ("a", "b"):
        image = write_tif(data / "images" / f"{stem}.tif", rng.integers(1, 255, (4, 32, 32)).astype(np.uint8), descriptions=("red", "green", "blue", "nir"))
        with rasterio.open(image, "r+") as dst:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
        write_tif(data / "masks" / f"{stem}.tif", half)
    run = tmp_path / "run"
    flags = ["--backbone", "tiny", "--steps", "2", "--batch-size", "2", "--crop", "32", "--fisher-samples", "2", "--select", "2", "--val-every", "1"]
    adapted = CliRunner().invoke(app, ["adapt", str(data), "-o", str(run), *flags, "--device", "cpu"])
    assert adapted.exit_code == 0, adapted.output
    notes = [line for line in adapted.output.splitlines() if "tagged as alpha" in line]
    assert len(notes) == 1 and notes[0].startswith("note: 2 image(s) (images/a.tif, images/b.tif): band 4 is tagged as alpha"), adapted.output
    assert not [line for line in adapted.output.splitlines() if line.startswith("warning:")], adapted.output
    recorded = json.loads((run / "run.json").read_text())["data"]
    assert recorded["notes"] == [notes[0].removeprefix("note: ")] and recorded["warnings"] == []

    mapped = CliRunner().invoke(app, ["predict", str(run), str(data / "images"), "-o", str(tmp_path / "maps"), "--vector", "none", "--device", "cpu", "--json"])
    assert mapped.exit_code == 0, mapped.output
    notes = [line for line in mapped.output.splitlines() if line.startswith("note:")]  # the JSON on stdout quotes them too
    assert [line.split(": band 4 is tagged as alpha")[0] for line in notes] == ["note: a.tif", "note: b.tif"], mapped.output
    assert not [line for line in mapped.output.splitlines() if line.startswith("warning:")], mapped.output
    scenes = json.loads(mapped.stdout)["scenes"]
    assert [len(s["notes"]) for s in scenes] == [1, 1] and [s["warnings"] for s in scenes] == [[], []]
