"""What a raster may cost: a block GDAL would inflate whole beyond MAX_BLOCK_BYTES is refused where the
file is opened, a scene beyond MAX_SCENE_PIXELS before `predict` loads its run, and `predict` says what
each scene costs (pixels, tiles) and, after the first batch, an estimate of the time left. The large
files here are sparse: a few hundred bytes on disk that declare their full size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.data.raster import open_raster
from cegate_cli.errors import DataError
from cegate_cli.infra.capacity import MAX_BLOCK_BYTES, MAX_SCENE_PIXELS
from cegate_cli.infra.progress import BatchProgress
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.predict import scene_cost

TRAIN = TrainConfig(steps=2, batch_size=2, crop=32, warmup_steps=1, val_every=2, val_crops=2, save_every=2, fisher_samples=2, select="3", seed=0, device="cpu")


@pytest.fixture(scope="module")
def run(demo_dataset, tmp_path_factory: pytest.TempPathFactory):
    demo = demo_dataset(n_source=2, n_target=2, size=64, seed=2)
    return demo, adapt(AdaptOptions(source=demo.source_dir, out=tmp_path_factory.mktemp("cost") / "run", backbone="tiny", train=TRAIN)).run_dir


def _declared(path: Path, width: int, height: int, **layout) -> Path:
    """A GeoTIFF that declares `width` x `height` x 4 bands but stores no block (sparse)."""
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 4,
        "dtype": "uint16",
        "compress": "deflate",
        "sparse_ok": True,
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 5000000, 1, 1),
        **layout,
    }
    with rasterio.open(path, "w", **profile):
        pass
    assert path.stat().st_size < 2_000_000  # the block index only (38,000 tiles of the largest)
    return path


def test_one_huge_compressed_strip_is_refused_naming_the_block_and_the_fix(run, tmp_path: Path) -> None:
    demo, run_dir = run
    strip = _declared(tmp_path / "strip.tif", 20000, 20000, blockysize=20000)
    with pytest.raises(DataError) as refused:
        open_raster(strip)
    assert 20000 * 20000 * 4 * 2 > MAX_BLOCK_BYTES
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(strip), "-o", str(tmp_path / "maps"), "--vector", "none"])
    assert result.exit_code == 1, result.output
    line = [line for line in result.output.splitlines() if line.startswith("Error: ")][-1]
    assert line == f"Error: {refused.value}"
    assert str(strip) in line and "20000 x 20000 px" in line and "3.0 GiB" in line and "MAX_BLOCK_BYTES" in line
    assert "gdal_translate -co TILED=YES -co COMPRESS=DEFLATE strip.tif tiled.tif" in line


def test_a_strip_gdal_reads_row_by_row_is_accepted(tmp_path: Path) -> None:
    """Uncompressed, the same single strip is read a row at a time by GDAL: nothing to refuse."""
    strip = _declared(tmp_path / "plain.tif", 20000, 20000, blockysize=20000, compress=None)
    with open_raster(strip) as dataset:
        assert dataset.block_shapes[0] == (1, 20000)
        assert dataset.read(1, window=((100, 164), (100, 164))).shape == (64, 64)


def test_a_real_tiled_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "tiled.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=600,
        height=600,
        count=4,
        dtype="uint16",
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 1, 1),
    ) as dataset:
        dataset.write(np.ones((4, 600, 600), np.uint16))
    with open_raster(path) as dataset:
        assert dataset.read(1, window=((300, 310), (300, 310))).sum() == 100


def test_a_scene_beyond_the_pixel_bound_is_refused_before_the_run_loads(run, tmp_path: Path) -> None:
    demo, run_dir = run
    huge = _declared(tmp_path / "huge.tif", 100000, 100000, tiled=True)
    good = sorted((demo.target_dir / "images").glob("*.tif"))[0]
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(good), str(huge), "-o", str(tmp_path / "maps")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert str(huge) in lines[0] and "100,000 x 100,000 px" in lines[0] and "MAX_SCENE_PIXELS" in lines[0]
    assert 100000 * 100000 > MAX_SCENE_PIXELS
    assert not (tmp_path / "maps").exists()


def test_predict_says_what_each_scene_costs_and_estimates_the_time(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo, run_dir = run
    monkeypatch.setattr(scene_cost, "ESTIMATE_FROM_SECONDS", 0.0)  # the scenes here take a second, not minutes
    scenes = sorted((demo.target_dir / "images").glob("*.tif"))
    result = CliRunner().invoke(
        app,
        ["predict", str(run_dir), *map(str, scenes), "-o", str(tmp_path / "maps"), "--tile", "32", "--overlap", "8", "--batch-size", "1", "--vector", "none"],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # One line for the batch before mapping; each scene's own line comes as it starts, not twice.
    assert lines[0] == f"2 scenes: 8,192 px, 18 tiles of up to 32 px to map; the largest, {scenes[0].name}: 64 x 64 px", result.output
    assert sum(scenes[1].name in line for line in lines[:2]) == 0, result.output
    single = CliRunner().invoke(
        app,
        ["predict", str(run_dir), str(scenes[0]), "-o", str(tmp_path / "one"), "--tile", "32", "--overlap", "8", "--vector", "none"],
    )
    assert single.output.splitlines()[0] == f"{scenes[0].name}: 64 x 64 px, 9 tiles of 32 px to map", single.output
    estimates = [line for line in lines if line.startswith("estimate: about ")]
    assert len(estimates) == 1 and "for the 17 tiles left" in estimates[0] and "measured on the first batch" in estimates[0]


class _Seen(BatchProgress):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.tiles = 0

    def say(self, text: str) -> None:
        self.lines.append(text)

    def tiles_done(self, count: int) -> None:
        self.tiles += count


def test_the_estimate_is_the_rate_of_the_first_batch() -> None:
    seen = _Seen()
    now = [100.0]
    sizes = [scene_cost.SceneSize(Path(f"s{i}.tif"), 20000, 20000) for i in range(12)]
    wrapped = scene_cost.announce(sizes, lambda size: 50, 512, seen)
    assert seen.lines == ["12 scenes: 4,800.0 million px, 600 tiles of up to 512 px to map; the largest, s0.tif: 20,000 x 20,000 px (400.0 million px)"]
    assert isinstance(wrapped, scene_cost.RateEstimate)
    wrapped.clock = lambda: now[0]
    wrapped.file_started(Path("s0.tif"), 1, 12, 50)
    now[0] += 2.0
    wrapped.tiles_done(4)  # 2 tiles/s
    now[0] += 2.0
    wrapped.tiles_done(4)
    assert seen.tiles == 8
    assert seen.lines[1:] == [
        "estimate: about 5 min for the 596 tiles left, at 2 tiles/s measured on the first batch (a rough figure: that batch includes the model's warm-up)"
    ]
