"""Labeled and unlabeled GeoTIFF folders: what is in them, and whether it can be trained on.

A labeled folder is `images/` and `masks/` with matching file stems, plus an optional
`classes.yaml`. Every check runs before training starts and every problem is reported at once,
one line per file, because a user fixing a folder of 300 scenes should not meet them one by one.
Masks are scanned in windows, so a folder of huge scenes is checked without loading any of them.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cegate_cli.data.classes import DEFAULT_IGNORE_INDEX, ClassTable, load_class_table
from cegate_cli.data.gdal import gdal_detail
from cegate_cli.data.raster import (
    PixelValidity,
    alpha_as_data_note,
    grid_differences,
    is_tiff,
    is_tiff_name,
    mask_nodata,
    not_a_file_reason,
    open_raster,
)
from cegate_cli.data.raster_cache import MaskSource
from cegate_cli.data.stac import is_item_name, item_files, looks_like_item, scene_name
from cegate_cli.data.windows import iter_windows, read_pixels
from cegate_cli.errors import DataError, DataFileNotFoundError

CLASSES_FILE = "classes.yaml"
SCAN_WINDOW = 2048  # mask scan chunk: 4 Mpx of int64 at most in memory at once
MAX_PROBLEM_LINES = 60
VALID_SCAN_WINDOW = 512  # image scan chunk for "is any pixel valid": stops at the first valid one
FILES_PER_WARNING = 5  # more files with the same problem share one warning line


@dataclass(frozen=True)
class ImagePair:
    """One training scene and its mask, plus how the mask must be read to match the image."""

    image: Path
    mask: Path
    warp_mask: bool = False
    """The mask is on another grid and is read warped onto the image's (nearest neighbour)."""
    mask_nodata: int | None = None
    """A value in the mask file that means "no label"; read as the ignore index."""

    @property
    def mask_source(self) -> MaskSource:
        return MaskSource(self.mask, self.image if self.warp_mask else None, self.mask_nodata)


@dataclass
class LabeledFolder:
    """A checked labeled folder: pairs that can be trained on, the class table, and what to tell the user."""

    root: Path
    pairs: tuple[ImagePair, ...]
    class_table: ClassTable
    warnings: list[str] = field(default_factory=list)
    classes_file: Path | None = None
    """The classes.yaml used; None when classes were taken from the mask values."""
    label_counts: dict[int, int] = field(default_factory=dict)
    """Pixels per mask value over all masks (ignore index included), for class balance reports."""
    label_images: dict[int, int] = field(default_factory=dict)
    """How many masks hold each value: a class in one image is a class seen in one place."""

    @property
    def images(self) -> tuple[Path, ...]:
        return tuple(p.image for p in self.pairs)

    @property
    def inferred_classes_note(self) -> str | None:
        """Without a classes.yaml, what the classes were inferred from and how to name them; None with one.

        Said once by `adapt`: a class none of the masks holds is not learned, and `evaluate` then
        refuses labels holding it, which surprised users whose training tiles happened to lack one.
        """
        if self.classes_file is not None:
            return None
        ids = list(self.class_table.ids)
        return (
            f"no {CLASSES_FILE} in {self.root}: {len(ids)} class(es) inferred from the values of all {len(self.pairs)} "
            f"mask(s) (ids {_short(ids)}, named class_<id>); a class none of them holds is not learned. To name the classes "
            f"or add missing ones, put a {CLASSES_FILE} next to images/ and masks/ (template: examples/classes.yaml)"
        )


def _tiffs(folder: Path) -> list[Path]:
    """Every .tif/.tiff name in `folder`, also those that are not regular files (a folder, a FIFO,
    a broken or looping symlink), so they are reported for what they are instead of vanishing."""
    return sorted(p for p in folder.iterdir() if is_tiff_name(p))


def _scenes(folder: Path) -> list[Path]:
    """The images of `folder`: its .tif/.tiff names (see `_tiffs`) and its STAC item .json files
    (data/stac.py; other JSON files are not images)."""
    return sorted(_tiffs(folder) + item_files(folder))


def _open_problem(path: Path, exc: DataError) -> str:
    """The reason of an `open_raster` error without the path it starts with (the caller names it)."""
    text = str(exc)
    prefix = f"{path}: "
    if text.startswith(prefix) and exc.__cause__ is None:
        return text[len(prefix) :]
    return f"cannot read ({exc.__cause__ or exc})"


def _by_stem(files: list[Path], root: Path, problems: list[str]) -> dict[str, Path]:
    """Files by the name that pairs them: the stem, or a STAC item's id (masks/<id>.tif)."""
    found: dict[str, Path] = {}
    for path in files:
        stem = scene_name(path)
        if stem in found:
            problems.append(f"{_rel(path, root)}: same name as {_rel(found[stem], root)}; keep one of them")
            continue
        found[stem] = path
    return found


def _is_labeled(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "masks").is_dir()


def _labeled_nearby_hint(root: Path, shown: int = 3) -> str:
    """For a folder that is not a labeled one, the labeled folder the user likely meant: its
    parent when it is that folder's images/ or masks/, or the labeled folders inside it."""
    try:
        if root.resolve().name in ("images", "masks") and _is_labeled(root.resolve().parent):
            parent = root.parent if root.name in ("images", "masks") else root.resolve().parent
            return f"; did you mean {parent}, which holds images/ and masks/?"
        inside = sorted(d.name for d in root.iterdir() if d.is_dir() and _is_labeled(d))
    except OSError:
        return ""
    if not inside:
        return ""
    listed = " or ".join(str(root / name) for name in inside[:shown]) + (f" ({len(inside) - shown} more)" if len(inside) > shown else "")
    return f"; did you mean {listed}, labeled folders inside it?"


def _similar_folder_hint(root: Path) -> str:
    """For a folder that does not exist, a folder beside it with a close name (a typo)."""
    parent = root.parent
    try:
        names = [d.name for d in parent.iterdir() if d.is_dir()] if parent.is_dir() else []
    except OSError:
        return ""
    close = difflib.get_close_matches(root.name, names, n=1, cutoff=0.75)
    return f"; did you mean {parent / close[0]}?" if close else ""


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def discover_images(root: Path) -> tuple[Path, ...]:
    """The GeoTIFFs and STAC items of an unlabeled folder (`root/*.tif` or `root/images/*.tif`,
    and *.json items), or one file."""
    root = Path(root)
    if is_item_name(root) and looks_like_item(root):
        return (root,)
    if not root.is_dir():
        reason = not_a_file_reason(root)
        if reason is not None and (reason.startswith("no such file") or not is_tiff_name(root)):
            raise DataFileNotFoundError(f"{root}: no such file or folder" if reason.startswith("no such file") else f"{root}: {reason}")
        if reason is not None:
            raise DataError(f"{root}: {reason}")
        if not is_tiff(root):
            raise DataFileNotFoundError(f"{root}: not a GeoTIFF (.tif or .tiff)")
        return (root,)
    images_dir = root / "images"
    files = _scenes(images_dir) if images_dir.is_dir() else []
    if not files:
        files = _scenes(root)
    if not files:
        raise DataFileNotFoundError(f"{root}: no .tif or .tiff files or STAC item .json files in it or in {images_dir}")
    unusable = [f"{path}: {reason}" for path in files if (reason := not_a_file_reason(path)) is not None]
    if unusable:
        raise DataError(f"{len(unusable)} of {len(files)} image(s) in {root} are not files:\n" + "\n".join(f"  - {u}" for u in unusable))
    return tuple(files)


def discover_labeled(
    root: Path,
    *,
    classes_file: Path | None = None,
    ignore_index: int | None = None,
    align: bool = False,
) -> LabeledFolder:
    """Find and check every image/mask pair of a labeled folder; raise one DataError listing all problems.

    `ignore_index` overrides the value in classes.yaml (default 255). With `align`, a mask on
    another grid is read warped onto its image's grid instead of being an error.
    """
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    if not root.is_dir():
        raise DataFileNotFoundError(f"{root}: no such folder (expected {root}/images and {root}/masks){_similar_folder_hint(root)}")
    for sub in (images_dir, masks_dir):
        if not sub.is_dir():
            raise DataFileNotFoundError(
                f"{root}: no {sub.name}/ folder; a labeled folder holds images/ and masks/ with the same file names{_labeled_nearby_hint(root)}"
            )
    problems: list[str] = []
    images = _by_stem(_scenes(images_dir), root, problems)
    masks = _by_stem(_tiffs(masks_dir), root, problems)
    if not images:
        raise DataFileNotFoundError(f"{images_dir}: no .tif or .tiff files or STAC item .json files")
    for stem in sorted(set(images) - set(masks)):
        reason = not_a_file_reason(images[stem])
        problems.append(f"{_rel(images[stem], root)}: {reason or f'no mask (expected masks/{stem}.tif)'}")
    for stem in sorted(set(masks) - set(images)):
        reason = not_a_file_reason(masks[stem])
        problems.append(f"{_rel(masks[stem], root)}: {reason or f'no image (expected images/{stem}.tif)'}")

    table_path = Path(classes_file) if classes_file is not None else root / CLASSES_FILE
    if classes_file is not None and not os.path.lexists(table_path):
        raise DataFileNotFoundError(f"{table_path}: class table not found")
    # Whatever has the name is read (a folder or a broken link there is named, not passed over).
    explicit = load_class_table(table_path, ignore_index) if os.path.lexists(table_path) else None
    ignore = explicit.ignore_index if explicit else (DEFAULT_IGNORE_INDEX if ignore_index is None else int(ignore_index))

    warnings: list[str] = []
    checked: list[tuple[ImagePair, dict[int, int]]] = []
    for stem in sorted(set(images) & set(masks)):
        result = _check_pair(images[stem], masks[stem], root, align, problems, warnings)
        if result is not None:
            checked.append(result)

    label_counts: Counter[int] = Counter()
    label_images: Counter[int] = Counter()
    pairs: list[ImagePair] = []
    nodata_dropped: dict[int, list[str]] = {}
    for pair, counts in checked:
        nodata = pair.mask_nodata
        if nodata is not None and nodata != ignore and explicit is not None and nodata in explicit.ids:
            warnings.append(
                f"{_rel(pair.mask, root)}: nodata value {nodata} is class {explicit.name_of(nodata)!r} in "
                f"{table_path.name}; those pixels are read as that class"
            )
            pair = ImagePair(pair.image, pair.mask, pair.warp_mask, None)
        elif nodata is not None and nodata != ignore and counts.get(nodata):
            nodata_dropped.setdefault(nodata, []).append(_rel(pair.mask, root))
        pair_labels: Counter[int] = Counter()
        for value, n in counts.items():
            pair_labels[ignore if value == pair.mask_nodata else value] += n
        label_counts.update(pair_labels)
        label_images.update(value for value, n in pair_labels.items() if n)
        bad = sorted(v for v in pair_labels if v != ignore and (v not in explicit.ids if explicit else not 0 <= v <= 254))
        if bad:
            expected = f"the classes in {table_path.name} {list(explicit.ids)}" if explicit else "class ids 0-254"
            problems.append(f"{_rel(pair.mask, root)}: mask values {_short(bad)} are not {expected} or the ignore index {ignore}")
        pairs.append(pair)
    for value, files in nodata_dropped.items():
        warnings.append(
            f"{len(files)} mask(s) declare nodata={value} ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''}); "
            f"those pixels are read as unlabeled. If {value} is a class, list it in {CLASSES_FILE}."
        )
    if len(problems) == 1:  # one problem is one line, naming the file from the folder given
        raise DataError(f"{root}/{problems[0]}")
    if problems:
        shown = problems[:MAX_PROBLEM_LINES]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise DataError(f"{len(problems)} problem(s) in labeled folder {root}:\n" + "\n".join(f"  - {p}" for p in shown) + more)

    present = {v for v, n in label_counts.items() if n}
    if explicit is not None:
        table = explicit
    else:
        table = ClassTable.from_ids(sorted(present - {ignore}), ignore_index=ignore)
    if not present - {ignore}:
        raise DataError(f"{root}: the masks hold no labels, only the ignore index {ignore}; check the masks or set the ignore index with --ignore-index")
    if present == {0, ignore} and ignore == DEFAULT_IGNORE_INDEX:
        warnings.append(
            f"the masks hold only the values 0 and {ignore}, and {ignore} is the ignore index, so only class 0 "
            f"would be learned. If {ignore} marks a class (e.g. a binary mask written as 0/255), remap {ignore} "
            f"to 1 in the masks: class ids must be 0-254, so {ignore} cannot be a class. If some other value marks "
            "unlabeled pixels, write a classes.yaml with `ignore_index: <that value>` (or pass --ignore-index)."
        )
    return LabeledFolder(
        root=root,
        pairs=tuple(pairs),
        class_table=table,
        warnings=warnings,
        classes_file=table_path if explicit is not None else None,
        label_counts=dict(sorted(label_counts.items())),
        label_images=dict(sorted(label_images.items())),
    )


def _short(values: list[int], limit: int = 12) -> str:
    return str(values) if len(values) <= limit else str(values[:limit])[:-1] + ", ...]"


def _check_pair(image: Path, mask: Path, root: Path, align: bool, problems: list[str], warnings: list[str]) -> tuple[ImagePair, dict[int, int]] | None:
    """Open both files, compare grids, scan mask values; append problems, return None if unusable."""
    opened: list[Any] = []
    try:
        for path in (image, mask):
            try:
                opened.append(open_raster(path))
            except DataError as exc:
                problems.append(f"{_rel(path, root)}: {_open_problem(path, exc)}")
        if len(opened) < 2:
            return None
        img, msk = opened
        mask_name = _rel(mask, root)
        usable = True
        if msk.count != 1:
            problems.append(f"{mask_name}: has {msk.count} bands; a mask has one band of class ids")
            usable = False
        if not np.issubdtype(np.dtype(msk.dtypes[0]), np.integer):
            problems.append(f"{mask_name}: data type {msk.dtypes[0]}; a mask holds integer class ids (e.g. uint8)")
            usable = False
        differences = grid_differences(img, msk)
        warp = False
        if differences and not align:
            problems.append(
                f"{mask_name}: grid differs from {_rel(image, root)} ({'; '.join(differences)}); reproject the mask onto the image grid or pass --align"
            )
            usable = False
        elif differences:
            reason = _cannot_warp(img, msk)
            if reason:
                problems.append(f"{mask_name}: cannot align with {_rel(image, root)}: {reason}")
                usable = False
            else:
                warp = True
                warnings.append(f"{mask_name}: warped onto the grid of {_rel(image, root)} (nearest neighbour)")
        if not usable:
            return None
        try:
            counts = _scan_values(msk)
        except Exception as exc:  # a corrupt block shows up only when read
            problems.append(f"{mask_name}: cannot read pixels ({gdal_detail(exc)}); the file may be truncated or corrupt")
            return None
        return ImagePair(image, mask, warp, mask_nodata(msk)), counts
    finally:
        for ds in opened:
            ds.close()


def _cannot_warp(img: Any, msk: Any) -> str | None:
    if img.crs is None or msk.crs is None:
        return "one of them has no CRS"
    from rasterio.warp import transform_bounds

    try:
        left, bottom, right, top = transform_bounds(msk.crs, img.crs, *msk.bounds)
    except Exception as exc:
        return f"cannot transform the mask's bounds ({exc})"
    ib = img.bounds
    if right <= ib.left or left >= ib.right or top <= ib.bottom or bottom >= ib.top:
        return "they do not overlap"
    return None


def _scan_values(ds: Any) -> dict[int, int]:
    """Pixel count per value of a single-band integer raster, read in windows."""
    counts: Counter[int] = Counter()
    small = np.dtype(ds.dtypes[0]) in (np.dtype(np.uint8), np.dtype(np.int8))
    for window in iter_windows(ds.width, ds.height, SCAN_WINDOW):
        block = ds.read(1, window=window)
        if small:
            offset = 128 if block.dtype == np.int8 else 0
            bins = np.bincount((block.astype(np.int16) + offset).ravel(), minlength=256)
            counts.update({int(v) - offset: int(n) for v, n in enumerate(bins) if n})
        else:
            values, n = np.unique(block, return_counts=True)
            counts.update({int(v): int(c) for v, c in zip(values, n)})
    return dict(counts)


@dataclass(frozen=True)
class ImageContents:
    """What `check_image_contents` found: warnings and notes for the user, and the images to leave out."""

    warnings: list[str]
    empty: frozenset[Path]
    """Images without a single valid pixel: they cannot teach anything, and held out for validation
    they would make its mIoU NaN, so callers leave them out."""
    notes: list[str] = field(default_factory=list)
    """What cegate did that the user may want to know but that is no problem (an alpha-tagged
    band read as data): printed as "note:", not counted among the warnings."""


def check_image_contents(images: Sequence[Path], band_indexes: Sequence[tuple[int, ...]], crop: int, root: Path) -> ImageContents:
    """Warnings about images that train badly or not at all and notes about what is read in an
    unexpected way, each naming its files; a DataError when no image has a single valid pixel
    (nothing could be trained).

    Caught here, before training, because otherwise each of these trains without a word:
    - an image with no valid pixel (all NaN, all nodata, fully masked) for the bands the run uses
      contributes nothing, and if it was the one a user cared about they never learned why;
    - an image smaller than the crop is padded with unlabeled pixels, most of each crop wasted;
    - an image stored in another data type than the rest (uint8 among uint16) is most likely on
      another value scale, yet all are normalised with the same statistics;
    - a band tagged alpha that the run reads as data (NAIP's NIR) is not used as a mask: a note,
      said once for all such images, since the user may have meant it as transparency.
    The valid-pixel scan stops at the first valid pixel, so a good image costs one window read.
    """
    empty: list[str] = []
    empty_paths: set[Path] = set()
    small: list[str] = []
    dtypes: dict[Path, str] = {}
    alpha_as_data: dict[int, list[str]] = {}  # alpha-tagged band -> images whose run reads it as data
    for path, indexes in zip(images, band_indexes):
        with open_raster(Path(path)) as ds:
            dtypes[path] = str(ds.dtypes[indexes[0] - 1])
            if ds.width < crop or ds.height < crop:
                small.append(f"{_rel(path, root)} ({ds.width} x {ds.height})")
            validity = PixelValidity(ds, indexes)
            if validity.alpha_as_data is not None:
                alpha_as_data.setdefault(validity.alpha_as_data, []).append(_rel(path, root))
            if not _has_valid_pixel(ds, validity):
                empty.append(_rel(path, root))
                empty_paths.add(path)
    if len(empty) == len(images):
        raise DataError(
            f"{root}: no valid pixel in any of the {len(images)} image(s) ({_listed(empty)}): every pixel is nodata, "
            "NaN or masked in at least one of the bands used; check the files' nodata value, or choose other bands with --bands"
        )
    warnings = grouped(empty, "has no valid pixel (every pixel is nodata, NaN or masked in a band the run uses); left out of training and validation")
    warnings += grouped(small, f"is smaller than --crop {crop}; its crops are padded with unlabeled pixels (a smaller --crop uses it better)")
    notes = [f"{len(names)} image(s) ({_listed(names)}): {alpha_as_data_note(band)}" for band, names in sorted(alpha_as_data.items())]
    used = {p: d for p, d in dtypes.items() if p not in empty_paths}  # an image left out has no scale to compare
    counts = Counter(used.values())
    if len(counts) > 1:
        usual, n = counts.most_common(1)[0]
        for dtype in sorted(set(counts) - {usual}):
            odd = [_rel(p, root) for p, d in used.items() if d == dtype]
            warnings += grouped(
                odd,
                f"holds {dtype} values while {n} of {len(used)} images hold {usual}; all are normalised with the same "
                "statistics, so check it is on the same scale (rescale it or leave it out)",
            )
    return ImageContents(warnings, frozenset(empty_paths), notes)


def _has_valid_pixel(ds: Any, validity: PixelValidity) -> bool:
    for window in iter_windows(ds.width, ds.height, VALID_SCAN_WINDOW):
        if read_pixels(ds, validity.indexes, window, validity=validity)[1].any():
            return True
    return False


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:FILES_PER_WARNING])
    return shown + (f" and {len(names) - FILES_PER_WARNING} more" if len(names) > FILES_PER_WARNING else "")


def grouped(names: Sequence[str], what: str) -> list[str]:
    """One line per file, or one line for many files with the same problem or note (`FILES_PER_WARNING`)."""
    if len(names) <= FILES_PER_WARNING:
        return [f"{name}: {what}" for name in names]
    return [f"{len(names)} images ({_listed(names)}): each {what}"]
