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
from predict_rasters import class_table, write_scene

from cegate_cli.bands import band_names_of
from cegate_cli.data.raster import open_raster
from cegate_cli.errors import DataError, DataFileNotFoundError
from cegate_cli.metrics import evaluate_scene
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
