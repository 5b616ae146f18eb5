"""Read model-ready tiles from a scene: chosen bands, normalised, nodata found and zeroed.

A pixel is nodata when any chosen band says so (its nodata value, a per-dataset or alpha mask,
or a non-finite value): the model cannot classify what one band does not see. The rule is
data/raster.py's `PixelValidity`, read through data/windows.py as training reads it. Nodata inputs are
set to 0 after normalisation, i.e. the band mean, the least surprising value for the model; the
blender later turns those pixels into the mask's nodata value whatever the model said.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from cegate_cli.data.raster import PixelValidity
from cegate_cli.data.stats import BandStats
from cegate_cli.data.windows import read_pixels
from cegate_cli.errors import DataError, InputError
from cegate_cli.predict.tiling import Tile, pad_to


class SceneReader:
    """Tiles of one open scene; owns no file handle (the caller closes the dataset)."""

    def __init__(self, dataset: rasterio.DatasetReader, path: Path, band_indexes: tuple[int, ...], stats: BandStats):
        if not band_indexes:
            raise InputError("no bands chosen for prediction")
        bad = [b for b in band_indexes if not 1 <= b <= dataset.count]
        if bad:
            raise DataError(
                f"{path}: has {dataset.count} band(s) but band(s) {bad} were asked for; check that the scene has the bands the model was trained on"
            )
        if len(stats.mean) != len(band_indexes) or len(stats.std) != len(band_indexes):
            raise InputError(f"normalisation statistics cover {len(stats.mean)} band(s) but {len(band_indexes)} band(s) were chosen")
        self.dataset = dataset
        self.path = path
        self.band_indexes = tuple(band_indexes)
        self.stats = stats
        self._validity = PixelValidity(dataset, self.band_indexes)  # the rule training used, planned once
        self.alpha_as_data = self._validity.alpha_as_data  # an alpha-tagged band read as data, for one note

    def read(self, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        """(C, tile.height, tile.width) float32 normalised pixels and a (h, w) bool valid mask.

        Padding added for a scene smaller than the tile is marked invalid so it never counts.
        """
        raw, valid = read_pixels(self.dataset, self.band_indexes, tile.window, validity=self._validity, name=self.path)
        with np.errstate(over="ignore", invalid="ignore"):
            pixels = self.stats.normalize(raw)
        pixels[~np.isfinite(pixels)] = 0.0  # only values near float32's limit overflow here; never feed inf
        pixels[:, ~valid] = 0.0
        pixels = pad_to(pixels, tile.height, tile.width)
        valid = np.pad(valid, ((0, tile.height - valid.shape[0]), (0, tile.width - valid.shape[1])))
        return pixels, valid
