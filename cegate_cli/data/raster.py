"""Input rasters: how cegate opens them, which pixels are valid, and whether two share a grid.

Every module that reads a scene, a training image or a mask opens it with `open_raster`, asks
`PixelValidity` which pixels hold data and compares grids with `grid_mismatches`, so a file is
refused with the same words everywhere and training, statistics, predict and evaluate count the
same pixels. Before, four copies of these rules disagreed (which errors were caught, what a
nodata value the band cannot hold meant, how close two transforms had to be).

One rule for "valid pixel" (`PixelValidity`): a pixel is valid only where EVERY band the run
uses is valid, i.e. not its band's nodata value, not NaN or infinite, and not masked by the
file's internal or per-dataset mask or its alpha band. The model cannot classify what one of its
bands does not see, and a rule that differed between training and predict trained on pixels
predict then refused. A band the run reads as data is never also its mask: NAIP-style files tag
their NIR band as alpha, and reading it as transparency dropped every pixel whose NIR is 0.

Reading windows (data/windows.py), keeping handles open (data/raster_cache.py) and a scene's
pixel size and date (data/scene_info.py) build on this module.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NodataShadowWarning, RasterioError
from rasterio.windows import Window

from cegate_cli.data import stac
from cegate_cli.data.blocks import check_blocks
from cegate_cli.data.gdal import gdal_detail, quiet_open
from cegate_cli.errors import CegateError, DataError, DataFileNotFoundError

TIFF_SUFFIXES = (".tif", ".tiff")


def is_tiff(path: Path) -> bool:
    """A GeoTIFF the user put there (hidden files such as our own temporary files are skipped)."""
    return path.is_file() and path.suffix.lower() in TIFF_SUFFIXES and not path.name.startswith(".")


def is_tiff_name(path: Path) -> bool:
    """A .tif/.tiff name the user gave (hidden names such as our own temporaries are not), whatever it is on disk."""
    return path.suffix.lower() in TIFF_SUFFIXES and not path.name.startswith(".")


def not_a_file_reason(path: Path) -> str | None:
    """Why `path` cannot be a raster file before anything reads it, in the user's words; None for a file.

    Without this a symlink loop, a FIFO or a folder named `x.tif` was simply "not there" (no such
    file, or a mask with "no image"), and the user looked for a missing file that was right there.
    """
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "no such file; check the path"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISLNK(mode):
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "is a symbolic link that loops back on itself; point it at the real file"
            return f"is a symbolic link to {os.readlink(path)}, which does not exist; point it at the real file"
    if stat.S_ISDIR(mode):
        return "is a folder, not a GeoTIFF file; rename it or move it out of the way"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a GeoTIFF file; copy the data into a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a GeoTIFF file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a GeoTIFF file"
    return None


_DRIVER_WORDS = {"PNG": "a PNG image", "JPEG": "a JPEG image", "GIF": "a GIF image", "BMP": "a BMP image", "WEBP": "a WebP image"}
READABLE_DRIVERS = ("GTiff", "COG", "VRT")  # VRT: what a STAC item opens as (data/stac.py)


def check_geotiff(ds: Any, path: Path) -> None:
    """Refuse a file GDAL reads with another driver: a PNG or JPEG renamed `.tif`.

    Such a file has no georeference, so unchecked it surfaces as "grid differs" from its mask or
    image, which sends the user looking at coordinates instead of at the file format.
    """
    if ds.driver in READABLE_DRIVERS:
        return
    what = _DRIVER_WORDS.get(ds.driver, f"a {ds.driver} file")
    raise DataError(
        f"{path}: is {what} with a .tif name, not a GeoTIFF; convert it (e.g. gdal_translate -of GTiff {Path(path).name} out.tif) or export it as GeoTIFF"
    )


def open_raster(path: Path) -> Any:
    """Open an input raster (GeoTIFF, or STAC item JSON) for reading; the one way cegate does it.

    Every failure is a one-line DataError (DataFileNotFoundError for a missing file) that names the
    file and says what to do, so `adapt`, `predict`, `evaluate` and the report refuse a file in the
    same words: a folder, FIFO or looping symlink named .tif, a PNG renamed .tif, a truncated or
    corrupt file. rasterio's NotGeoreferencedWarning is kept off the terminal (data/gdal.py); a
    STAC item opens as the stack of its band assets (data/stac.py), with the item's own messages.
    """
    path = Path(path)
    reason = not_a_file_reason(path)
    if reason is not None:
        error = DataFileNotFoundError if reason.startswith("no such file") else DataError
        raise error(f"{path}: {reason}")
    try:
        ds = stac.open_item(path) if stac.is_item_name(path) else quiet_open(path)
    except CegateError:
        raise  # a STAC item's own message (data/stac.py) already names the item and the asset
    except (RasterioError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as a raster ({gdal_detail(exc)}); is it a complete GeoTIFF?") from exc
    try:
        check_geotiff(ds, path)
        if ds.driver != "VRT":  # a STAC item's VRT: its asset files were checked (data/stac.py)
            check_blocks(ds, path)
    except DataError:
        ds.close()
        raise
    return ds


class PixelValidity:
    """Which pixels of one open dataset are valid for the bands a run uses: THE rule, decided once.

    Valid only where every band in `indexes` is valid:
    - a band with a nodata value: the pixel differs from it (NaN nodata: the pixel is not NaN). An
      integer band whose nodata value it cannot hold (0.5, or -1 in uint8) masks nothing, as in GDAL;
    - a per-dataset (internal or .msk) mask or an alpha band: the mask is non-zero. An alpha band
      counts even where a nodata value is set too (GDAL would let the nodata value shadow it and
      rasterio would print a NodataShadowWarning; a transparent pixel is no data either way);
    - except an alpha-tagged band that is itself in `indexes`: it is data (NAIP tags NIR as
      alpha), so it marks nothing and `alpha_as_data` names it for the caller to say so once;
    - floating-point bands: the value is finite in float32, the precision the model sees.
    Training and band statistics (data/windows.py), the image checks (data/folder.py), predict
    (predict/reader.py) and evaluate (metrics.py) all ask this class, so they count the same pixels.
    """

    def __init__(self, ds: Any, indexes: Sequence[int]) -> None:
        self.indexes = tuple(int(i) for i in indexes)
        dtypes = [np.dtype(ds.dtypes[b - 1]) for b in self.indexes]
        complex_bands = [b for b, dtype in zip(self.indexes, dtypes) if dtype.kind == "c"]
        if complex_bands:
            raise DataError(
                f"{ds.name}: band(s) {complex_bands} hold complex numbers ({ds.dtypes[complex_bands[0] - 1]}); "
                "cegate reads real-valued bands: convert them (e.g. to their amplitude) first"
            )
        self.check_finite = any(dtype.kind == "f" for dtype in dtypes)
        self.value_tests: list[tuple[int, float]] = []  # (position in `indexes`, nodata value)
        self.mask_band: int | None = None  # a band whose read_masks() gives the dataset or alpha mask
        self.alpha_band: int | None = None  # an alpha band read directly (no NodataShadowWarning)
        alphas = [i for i, ci in enumerate(ds.colorinterp, start=1) if ci == ColorInterp.alpha]
        # The alpha-tagged band when the run reads it as data: then nothing masks by it (GDAL's
        # alpha mask, which read_masks would give, is that band too).
        self.alpha_as_data: int | None = alphas[0] if alphas and alphas[0] in self.indexes else None
        alpha = alphas[0] if alphas and self.alpha_as_data is None else None
        for position, (band, dtype) in enumerate(zip(self.indexes, dtypes)):
            flags = ds.mask_flag_enums[band - 1]
            if MaskFlags.all_valid in flags:
                continue
            if MaskFlags.nodata in flags:
                nodata = ds.nodatavals[band - 1]
                if nodata is not None and _representable(nodata, dtype):
                    self.value_tests.append((position, float(nodata)))
                if alpha is not None:
                    self.alpha_band = alpha
            elif MaskFlags.alpha in flags and alphas:
                self.alpha_band = alpha  # None when the alpha band is data: no mask at all
            elif self.mask_band is None:
                self.mask_band = band  # per-dataset mask: one read serves every band

    def of(self, ds: Any, raw: np.ndarray, window: Window) -> np.ndarray:
        """(h, w) bool for `raw` (C, h, w), the bands `indexes` as read from `window` of `ds`."""
        valid = np.ones(raw.shape[1:], dtype=bool)
        for position, nodata in self.value_tests:
            band = raw[position]
            if math.isnan(nodata):
                valid &= ~np.isnan(band)
            else:
                valid &= band != np.asarray(nodata).astype(band.dtype)
        if self.alpha_band is not None:
            valid &= ds.read(self.alpha_band, window=window) != 0
        if self.mask_band is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NodataShadowWarning)
                valid &= ds.read_masks(self.mask_band, window=window) != 0
        if self.check_finite:
            with np.errstate(over="ignore", invalid="ignore"):
                valid &= np.isfinite(raw.astype(np.float32, copy=False)).all(axis=0)
        return valid


def alpha_as_data_note(band: int) -> str:
    """What cegate did with an alpha-tagged band the run reads as data, in the user's words."""
    return f"band {band} is tagged as alpha, but this run reads it as data, not as a nodata mask (its zeros stay valid)"


def _representable(nodata: float, dtype: np.dtype) -> bool:
    """Whether a band of `dtype` can hold the value `nodata` (if not, no pixel equals it)."""
    if dtype.kind == "f":
        return True
    if math.isnan(nodata) or not float(nodata).is_integer():
        return False
    info = np.iinfo(dtype)
    return info.min <= nodata <= info.max


def mask_nodata(ds: Any) -> int | None:
    """The value a class mask's nodata means, as a class id; None when none is set or band 1 cannot hold it.

    The same rule as `PixelValidity` for image bands (GDAL's): a nodata value the band cannot
    hold (0.5, or 300 in uint8) matches no pixel, so it marks nothing and no class is dropped.
    """
    nodata = ds.nodatavals[0]
    if nodata is None or not float(nodata).is_integer():  # NaN is no integer either
        return None
    return int(nodata) if _representable(nodata, np.dtype(ds.dtypes[0])) else None


GridPart = Literal["crs", "size", "transform"]


def grid_mismatches(image: Any, other: Any, *, one_sided_crs_differs: bool = True) -> tuple[GridPart, ...]:
    """Which parts of `other`'s pixel grid differ from `image`'s, in the order CRS, size, transform; () when the same.

    The transform tolerance is a hundredth of a pixel at the far edge, so rounding in how a
    tool wrote the georeference is forgiven but a half-pixel shift is not. A CRS on one side
    only is a difference (`one_sided_crs_differs`, the labeled folder's rule); evaluate_scene
    compares CRS and transform only where both files have a CRS (see metrics.py).
    """
    parts: list[GridPart] = []
    both_referenced = image.crs is not None and other.crs is not None
    compare_georeference = one_sided_crs_differs or both_referenced
    if compare_georeference and image.crs != other.crs:
        parts.append("crs")
    if (image.width, image.height) != (other.width, other.height):
        parts.append("size")
    if compare_georeference and not _same_transform(image, other):
        parts.append("transform")
    return tuple(parts)


def _same_transform(a: Any, b: Any) -> bool:
    ta, tb = a.transform, b.transform
    pixel = max(abs(ta.a), abs(ta.e), 1e-12)
    extent = max(a.width, a.height, 1)
    scale_tol = 0.01 * pixel / extent
    offset_tol = 0.01 * pixel
    scale_ok = all(abs(x - y) <= scale_tol for x, y in ((ta.a, tb.a), (ta.b, tb.b), (ta.d, tb.d), (ta.e, tb.e)))
    offset_ok = abs(ta.c - tb.c) <= offset_tol and abs(ta.f - tb.f) <= offset_tol
    return scale_ok and offset_ok


def grid_differences(a: Any, b: Any) -> list[str]:
    """How the grid of `b` (a mask) differs from `a` (its image), one phrase per part; [] when the same."""
    texts = {
        "crs": f"CRS {b.crs or 'none'}, image {a.crs or 'none'}",
        "size": f"size {b.width}x{b.height}, image {a.width}x{a.height}",
        "transform": f"transform {tuple(round(v, 6) for v in b.transform[:6])}, image {tuple(round(v, 6) for v in a.transform[:6])}",
    }
    return [texts[part] for part in grid_mismatches(a, b)]
