"""Fuzz the raster entry points: every odd file either works or is one CegateError, never a crash.

Seeded cases (deterministic, a few seconds): random data types (int8 to float64, complex),
1 to 4 bands, nodata values (none, in the data, NaN, one the type cannot hold), sizes down to
1 x 1, all-nodata and non-finite content, alpha bands, compression, and corrupt files
(truncated, bytes overwritten, empty, not a TIFF at all). Each case goes through what a user
reaches: labeled-folder checks and band choice, the image checks, band statistics, training
crops, the target folder, predict of the scene and evaluate of the result.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from predict_rasters import class_table, pixel_model
from rasterio.enums import ColorInterp
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning
from rasterio.transform import from_origin

from cegate_cli.data.bands import bands_for_images
from cegate_cli.data.crops import CropSampler
from cegate_cli.data.folder import check_image_contents, discover_labeled
from cegate_cli.data.metrics import evaluate_scene
from cegate_cli.data.stats import BandStats, compute_band_stats
from cegate_cli.errors import CegateError
from cegate_cli.predict.engine import count_tiles, predict_scene
from cegate_cli.train.target_data import discover_target

SEED = 20240613
CASES = 48
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float32", "float64", "complex64")
CORRUPTIONS = ("none", "none", "none", "truncate", "overwrite", "empty", "garbage")


@dataclass
class Case:
    number: int
    dtype: str
    bands: int
    height: int
    width: int
    nodata: float | None
    fill: str
    alpha: bool
    compress: str | None
    crs: bool
    corruption: str
    mask_kind: str

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


def _draw(rng: np.random.Generator, number: int) -> Case:
    dtype = str(rng.choice(DTYPES))
    kind = np.dtype(dtype).kind
    nodata_options: list[float | None] = [None, 0.0]
    if kind == "f":
        nodata_options += [float("nan"), -9999.0]
    elif kind in "iu":
        nodata_options += [float(np.iinfo(dtype).max) if np.dtype(dtype).itemsize < 8 else -1.0, 0.5]
    return Case(
        number=number,
        dtype=dtype,
        bands=int(rng.integers(1, 5)),
        height=int(rng.choice([1, 2, 3, 7, 16, 33])),
        width=int(rng.choice([1, 2, 5, 16, 40])),
        nodata=nodata_options[int(rng.integers(len(nodata_options)))],
        fill=str(rng.choice(["random", "random", "constant", "all_nodata", "nonfinite", "extremes"])),
        alpha=bool(rng.random() < 0.15),
        compress=str(rng.choice(["none", "deflate", "lzw"])),
        crs=bool(rng.random() < 0.8),
        corruption=str(rng.choice(CORRUPTIONS)),
        mask_kind=str(rng.choice(["good", "good", "good", "float", "other_size", "unknown_values", "corrupt"])),
    )


def _pixels(case: Case, rng: np.random.Generator) -> np.ndarray:
    shape = (case.bands, case.height, case.width)
    dtype = np.dtype(case.dtype)
    if dtype.kind == "c":
        data = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)
    elif dtype.kind == "f":
        data = rng.normal(100, 30, size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        low, high = max(info.min, -1000), min(info.max, 5000)
        data = rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
    if case.fill == "constant":
        data[:] = data.flat[0]
    elif case.fill == "all_nodata" and case.nodata is not None:
        data[:] = np.asarray(case.nodata).astype(dtype) if dtype.kind in "fc" or float(case.nodata).is_integer() else 0
    elif case.fill == "nonfinite" and dtype.kind == "f":
        data[0, ::2] = np.nan
        data[-1, :, ::3] = np.inf
    elif case.fill == "extremes" and dtype.kind in "iu":
        data[0, 0] = np.iinfo(dtype).max
        data[-1, -1] = np.iinfo(dtype).min
    elif case.fill == "extremes" and dtype.kind == "f":
        data[0, 0] = np.finfo(dtype).max
    return data


def _write_image(path: Path, case: Case, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = case.bands + (1 if case.alpha else 0)
    profile: dict[str, Any] = dict(driver="GTiff", width=case.width, height=case.height, count=count, dtype=case.dtype)
    if case.nodata is not None:
        profile["nodata"] = case.nodata
    if case.crs:
        profile.update(crs="EPSG:32633", transform=from_origin(500000.0, 5000000.0, 10.0, 10.0))
    if case.compress != "none" and np.dtype(case.dtype).kind != "c":
        profile["compress"] = case.compress
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the test's own write, not cegate
        dst = rasterio.open(path, "w", **profile)
    with dst:
        dst.write(data, indexes=list(range(1, case.bands + 1)))
        if case.alpha:
            dtype = np.dtype(case.dtype)
            opaque = min(255, np.iinfo(dtype).max) if dtype.kind in "iu" else 255
            alpha = np.full((case.height, case.width), opaque, dtype=dtype)
            alpha[: case.height // 2] = 0
            dst.write(alpha, case.bands + 1)
            dst.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (case.bands - 1) + [ColorInterp.alpha]


def _corrupt(path: Path, how: str, rng: np.random.Generator) -> None:
    whole = path.read_bytes()
    if how == "truncate":
        path.write_bytes(whole[: int(rng.integers(0, max(1, len(whole) - 1)))])
    elif how == "overwrite":
        start = int(rng.integers(0, len(whole)))
        junk = rng.integers(0, 256, size=min(64, len(whole) - start), dtype=np.uint8).tobytes()
        path.write_bytes(whole[:start] + junk + whole[start + len(junk) :])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"II*\x00" + rng.integers(0, 256, size=300, dtype=np.uint8).tobytes())


def _write_mask(path: Path, case: Case, rng: np.random.Generator) -> None:
    height, width = (case.height + 1, case.width) if case.mask_kind == "other_size" else (case.height, case.width)
    labels = rng.integers(0, 3, size=(1, height, width)).astype(np.uint8)
    if case.mask_kind == "unknown_values":
        labels[0, 0, 0] = 254
    dtype = "float32" if case.mask_kind == "float" else "uint8"
    profile: dict[str, Any] = dict(driver="GTiff", width=width, height=height, count=1, dtype=dtype)
    if case.crs:
        profile.update(crs="EPSG:32633", transform=from_origin(500000.0, 5000000.0, 10.0, 10.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the test's own write, not cegate
        dst = rasterio.open(path, "w", **profile)
    with dst:
        dst.write(labels.astype(dtype))
    if case.mask_kind == "corrupt":
        _corrupt(path, "truncate", rng)


def _expect_ok_or_cegate_error(case: Case, step: str, call: Callable[[], Any]) -> tuple[bool, Any]:
    """Run one entry point: (True, result), or (False, None) after a proper CegateError.

    Raw Python warnings a user would see on stderr (rasterio's, numpy's overflow) count as failures.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", NotGeoreferencedWarning)
            warnings.simplefilter("error", NodataShadowWarning)
            warnings.simplefilter("error", RuntimeWarning)
            return True, call()
    except CegateError as exc:
        message = str(exc)
        lines = message.splitlines()
        assert lines and lines[0].strip(), f"case {case}: {step}: empty message"
        # One line, or the labeled folder's deliberate list: a header and one "  - " line per problem.
        assert len(lines) == 1 or all(line.startswith("  ") for line in lines[1:]), f"case {case}: {step}: {message!r}"
        assert "Traceback" not in message, f"case {case}: {step}: {message!r}"
        return False, None
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"case {case}: {step} raised {type(exc).__name__}: {exc}")


def _one_case(case: Case, root: Path) -> None:
    rng = np.random.default_rng([SEED, case.number, 1])
    data = _pixels(case, rng)
    image = root / "images" / "scene.tif"
    _write_image(image, case, data)
    _corrupt(image, case.corruption, rng)
    _write_mask(root / "masks" / "scene.tif", case, rng)

    # Training side: the labeled folder, its bands, the image checks, statistics and crops.
    ok, folder = _expect_ok_or_cegate_error(case, "discover_labeled", lambda: discover_labeled(root))
    ok, chosen = _expect_ok_or_cegate_error(case, "bands_for_images", lambda: bands_for_images(None, [image]))
    if ok:
        choice, per_image = chosen
        ok_checks, _ = _expect_ok_or_cegate_error(case, "check_image_contents", lambda: check_image_contents([image], per_image, 8, root).warnings)
        ok_stats, stats = _expect_ok_or_cegate_error(
            case, "compute_band_stats", lambda: compute_band_stats([image], per_image, choice.names, window=16, max_windows=4)
        )
        _expect_ok_or_cegate_error(case, "discover_target", lambda: discover_target(root / "images", choice))
        if folder is not None and ok_stats:

            def crops() -> None:
                with CropSampler(list(folder.pairs), per_image, stats, crop=8, ignore_index=255) as sampler:
                    batch = sampler.sample(0, 2, seed=1)
                    assert batch.images.shape == (2, choice.count, 8, 8)
                    assert bool(np.isfinite(batch.images.numpy()).all()) or not ok_checks
                    sampler.read(sampler.fixed_windows(2, seed=0))

            _expect_ok_or_cegate_error(case, "CropSampler", crops)

    # Predict side: the scene mapped by a tiny per-pixel model, then scored against its mask.
    stats = BandStats(tuple(f"b{i}" for i in range(case.bands)), (100.0,) * case.bands, (30.0,) * case.bands)
    out = root / "out" / "scene.mask.tif"
    _expect_ok_or_cegate_error(case, "count_tiles", lambda: count_tiles(image, tile=16, overlap=4))
    ok, result = _expect_ok_or_cegate_error(
        case,
        "predict_scene",
        lambda: predict_scene(
            pixel_model(case.bands, 3, seed=case.number),
            image,
            out,
            band_indexes=tuple(range(1, case.bands + 1)),
            stats=stats,
            class_table=class_table(3),
            tile=16,
            overlap=4,
            batch_size=2,
        ),
    )
    if ok:
        assert result.width == case.width and result.height == case.height
        _expect_ok_or_cegate_error(case, "evaluate_scene", lambda: evaluate_scene(out, root / "masks" / "scene.tif", num_classes=3, ignore_index=255))


def test_random_rasters_work_or_fail_with_one_cegate_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED)
    cases = [_draw(rng, number) for number in range(CASES)]
    # Every corruption, every data type and the 1 x 1 scene are in the drawn set (the seed is fixed).
    assert {c.corruption for c in cases} == set(CORRUPTIONS) and {c.dtype for c in cases} == set(DTYPES)
    assert any(c.height == 1 and c.width == 1 for c in cases) or any(min(c.height, c.width) == 1 for c in cases)
    for case in cases:
        _one_case(case, tmp_path / f"case{case.number:03d}")
