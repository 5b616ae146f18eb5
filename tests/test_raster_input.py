"""One raster-input module (data/raster.py): every reader opens, checks and refuses files alike.

Before, opening was written four times: predict said "cannot be read as a raster (...); is it a
complete GeoTIFF?", training "cannot read raster (...)", evaluate "label mask cannot be read as a
raster" and vectorising "no such mask file"; evaluate and vectorising skipped the checks for a
FIFO, a folder or a PNG named .tif, and caught fewer errors than training did.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from predict_rasters import UTM_TRANSFORM, class_table, write_scene
from rasterio.transform import from_origin

from cegate_cli.data.bands import band_names_of
from cegate_cli.data.folder import discover_labeled
from cegate_cli.data.metrics import evaluate_scene
from cegate_cli.data.raster import open_raster
from cegate_cli.errors import DataError, DataFileNotFoundError
from cegate_cli.predict import vectorize_mask
from cegate_cli.predict.engine import count_tiles


def _labels(path: Path) -> Path:
    return write_scene(path, np.zeros((16, 16), np.uint8), nodata=255)


def _readers(good: Path, tmp_path: Path) -> dict[str, Callable[[Path], Any]]:
    """Every way a user's raster reaches cegate, each given the file under test."""
    return {
        "open_raster": lambda p: open_raster(p).close(),
        "bands": band_names_of,
        "predict": lambda p: count_tiles(p, tile=16, overlap=0),
        "evaluate (prediction)": lambda p: evaluate_scene(p, good, num_classes=2),
        "evaluate (labels)": lambda p: evaluate_scene(good, p, num_classes=2),
        "vectorize": lambda p: vectorize_mask(p, tmp_path / "out.gpkg", class_table=class_table(2), fmt="gpkg"),
    }


def test_every_reader_refuses_an_unreadable_file_in_the_same_words(tmp_path: Path) -> None:
    good = _labels(tmp_path / "good.tif")
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    for name, read in _readers(good, tmp_path).items():
        with pytest.raises(DataError) as err:
            read(broken)
        message = str(err.value)
        assert message.startswith(f"{broken}: cannot be read as a raster ("), (name, message)
        assert message.endswith("; is it a complete GeoTIFF?"), (name, message)


def test_every_reader_says_what_an_odd_file_really_is_before_opening_it(tmp_path: Path) -> None:
    """A FIFO is refused before GDAL opens it (opening would wait for a writer forever)."""
    good = _labels(tmp_path / "good.tif")
    png = tmp_path / "png.tif"
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(buffer, format="PNG")
    png.write_bytes(buffer.getvalue())
    fifo = tmp_path / "fifo.tif"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.tif"
    folder.mkdir()
    expected = {
        png: "is a PNG image with a .tif name, not a GeoTIFF; convert it",
        fifo: "is a named pipe (FIFO), not a GeoTIFF file",
        folder: "is a folder, not a GeoTIFF file",
    }
    for name, read in _readers(good, tmp_path).items():
        for path, words in expected.items():
            with pytest.raises(DataError) as err:
                read(path)
            assert str(err.value).startswith(f"{path}: {words}"), (name, str(err.value))
        with pytest.raises(DataFileNotFoundError) as missing:
            read(tmp_path / "missing.tif")
        assert str(missing.value) == f"{tmp_path / 'missing.tif'}: no such file; check the path", name


def _scene_and_labels(root: Path, labels_transform: Any, labels_crs: str | None = "EPSG:32633") -> tuple[Path, Path]:
    """A labeled folder of one 16 x 16 scene on UTM_TRANSFORM, whose mask has `labels_transform`."""
    scene = write_scene(root / "images" / "a.tif", np.full((1, 16, 16), 100, np.uint16))
    labels = write_scene(root / "masks" / "a.tif", np.tile(np.array([0, 1], np.uint8), (16, 8)), crs=labels_crs, transform=labels_transform)
    return scene, labels


@pytest.mark.parametrize("shift_pixels, same", [(0.001, True), (0.5, False)])
def test_evaluate_and_the_labeled_folder_forgive_the_same_georeference_rounding(tmp_path: Path, shift_pixels: float, same: bool) -> None:
    """One tolerance, a hundredth of a pixel: evaluate used to refuse any shift above 1e-6 pixel
    that the labeled folder (and so `adapt` and `evaluate` on a folder) had accepted."""
    shifted = from_origin(500000.0 + 10.0 * shift_pixels, 5000000.0, 10.0, 10.0)
    _, labels = _scene_and_labels(tmp_path, shifted)
    prediction = write_scene(tmp_path / "pred.tif", np.zeros((16, 16), np.uint8), transform=UTM_TRANSFORM)
    if same:
        assert discover_labeled(tmp_path).pairs[0].mask == labels
        assert evaluate_scene(prediction, labels, num_classes=2).total == 16 * 16
    else:
        with pytest.raises(DataError, match=r"masks/a.tif: grid differs from images/a.tif \(transform"):
            discover_labeled(tmp_path)
        with pytest.raises(DataError, match="different geotransforms"):
            evaluate_scene(prediction, labels, num_classes=2)


def test_a_crs_on_one_side_only_differs_in_a_labeled_folder_but_not_in_evaluate(tmp_path: Path) -> None:
    """The one rule that still differs (tests/test_valid_pixels.py evaluates a prediction without a
    CRS against labels with one): the folder refuses the pair, evaluate_scene compares sizes only."""
    _, labels = _scene_and_labels(tmp_path, None, labels_crs=None)
    with pytest.raises(DataError, match=r"masks/a.tif: grid differs from images/a.tif \(CRS none, image EPSG:32633"):
        discover_labeled(tmp_path)
    prediction = write_scene(tmp_path / "pred.tif", np.zeros((16, 16), np.uint8), transform=UTM_TRANSFORM)
    assert evaluate_scene(prediction, labels, num_classes=2).total == 16 * 16


def test_a_mask_nodata_value_the_band_cannot_hold_marks_nothing_anywhere(tmp_path: Path) -> None:
    """nodata 0.5 on a uint8 mask matches no pixel (GDAL's rule, `PixelValidity`'s for images):
    the labeled folder and evaluate already read it so; vectorize truncated it to 0 and dropped
    every class-0 region."""
    labels = np.zeros((16, 16), np.uint8)
    labels[:, 8:] = 1
    mask = write_scene(tmp_path / "masks" / "a.tif", labels, nodata=0.5)
    write_scene(tmp_path / "images" / "a.tif", np.full((1, 16, 16), 100, np.uint16))
    assert discover_labeled(tmp_path).pairs[0].mask_nodata is None
    assert evaluate_scene(mask, mask, num_classes=2).total == 16 * 16
    result = vectorize_mask(mask, tmp_path / "a.gpkg", class_table=class_table(2), fmt="gpkg")
    assert result.class_features == {0: 1, 1: 1}
