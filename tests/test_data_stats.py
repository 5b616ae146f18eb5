"""Band statistics: equal to numpy on small data, nodata left out, sampled windows only."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from data_rasters import write_tif

from cegate_cli.data.stats import BandStats, compute_band_stats
from cegate_cli.errors import DataError


def test_stats_equal_numpy_and_skip_nodata(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(1, 10000, size=(3, 70, 90)).astype(np.uint16)
    a[:, :10, :] = 0  # nodata collar in every band
    b = (rng.normal(20000, 300, size=(3, 40, 50))).astype(np.uint16)  # large offset: naive float32 sums drift
    pa = write_tif(tmp_path / "a.tif", a, nodata=0)
    pb = write_tif(tmp_path / "b.tif", b[::-1], nodata=0)  # stored in another band order
    stats = compute_band_stats([pa, pb], [(1, 2, 3), (3, 2, 1)], ("x", "y", "z"), window=32, max_windows=1000)
    valid = a[:, 10:, :].reshape(3, -1)
    both = np.concatenate([valid, b.reshape(3, -1)], axis=1).astype(np.float64)
    np.testing.assert_allclose(stats.mean, both.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(stats.std, both.std(axis=1), rtol=1e-8)
    assert stats.names == ("x", "y", "z")
    assert BandStats.from_dict(stats.to_dict()) == stats


def test_dataset_mask_is_respected(tmp_path) -> None:
    path = tmp_path / "masked.tif"
    data = np.full((1, 32, 32), 7, np.float32)
    data[0, :, :16] = 1000.0  # hidden by the internal mask below
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype="float32") as dst:
            dst.write(data)
            mask = np.zeros((32, 32), np.uint8)
            mask[:, 16:] = 255
            dst.write_mask(mask)
    stats = compute_band_stats([path], [(1,)], ("b",))
    assert stats.mean == (7.0,)
    assert stats.std[0] == pytest.approx(0.07)  # constant band: floored at 1% of the mean, never 0


def test_sampling_reads_at_most_max_windows(tmp_path, monkeypatch) -> None:
    import cegate_cli.data.stats as stats_module

    rng = np.random.default_rng(1)
    path = write_tif(tmp_path / "big.tif", rng.normal(100, 10, size=(2, 256, 256)).astype(np.float32))
    windows = []
    real_read = stats_module.read_image_window

    def spy(ds, indexes, window):
        windows.append(window)
        return real_read(ds, indexes, window)

    monkeypatch.setattr(stats_module, "read_image_window", spy)
    stats = compute_band_stats([path], [(1, 2)], ("p", "q"), window=32, max_windows=6, seed=3)
    assert len(windows) == 6 and all(w.width == 32 and w.height == 32 for w in windows)
    assert abs(stats.mean[0] - 100) < 2 and 8 < stats.std[0] < 12
    again = compute_band_stats([path], [(1, 2)], ("p", "q"), window=32, max_windows=6, seed=3)
    assert again == stats


def test_all_nodata_is_an_error(tmp_path) -> None:
    path = write_tif(tmp_path / "empty.tif", np.zeros((1, 16, 16), np.uint16), nodata=0)
    with pytest.raises(DataError, match="no valid pixels"):
        compute_band_stats([path], [(1,)], ("b",))
