"""Confusion matrix, IoU and friends, and a streaming comparison of two mask GeoTIFFs.

Rows of the matrix are the true class, columns the predicted one. Pixels whose label is the
ignore index (or nodata), and pixels the prediction left as nodata, are not counted: they are
neither right nor wrong.

mIoU averages the IoU of the classes that occur in the labels or in the prediction. A class
absent from both has no IoU (0/0) and is left out rather than counted as 0 or 1, so a test set
without, say, snow neither rewards nor punishes the model for snow. A class predicted but absent
from the labels has IoU 0 and does count: those are pure false positives.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.errors import RasterioError
from rasterio.windows import Window

from cegate_cli.data.classes import ClassTable
from cegate_cli.data.gdal import gdal_detail
from cegate_cli.data.raster import PixelValidity, grid_mismatches, open_raster
from cegate_cli.errors import DataError, InputError

ArrayLike = np.ndarray | torch.Tensor
STRIP_ROWS = 512


def _as_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


class ConfusionMatrix:
    """Counts of (true class, predicted class) pixel pairs, accumulated over any number of updates."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise InputError(f"a confusion matrix needs at least one class, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: ArrayLike, target: ArrayLike, valid: ArrayLike | None = None) -> None:
        """Count pixels of equally shaped `pred` and `target` (numpy or torch, any shape).

        Pixels are skipped where `target` is the ignore index, where `pred` is the ignore index
        (nodata in a predicted mask), and where `valid` is False.
        """
        p = _as_numpy(pred).astype(np.int64, copy=False).ravel()
        t = _as_numpy(target).astype(np.int64, copy=False).ravel()
        if p.shape != t.shape:
            raise InputError(f"prediction has {p.size} pixels but target has {t.size}")
        keep = (t != self.ignore_index) & (p != self.ignore_index)
        if valid is not None:
            keep &= _as_numpy(valid).astype(bool, copy=False).ravel()
        p, t = p[keep], t[keep]
        k = self.num_classes
        for name, values in (("label", t), ("prediction", p)):
            if values.size and (values.min() < 0 or values.max() >= k):
                bad = sorted(set(np.unique(values[(values < 0) | (values >= k)]).tolist()))[:5]
                raise DataError(f"{name} holds class id(s) {bad}, outside 0..{k - 1}; check the class table or set the ignore index (now {self.ignore_index})")
        self.matrix += np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from another scene or process) into this one."""
        if other.num_classes != self.num_classes:
            raise InputError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.matrix += other.matrix
        return self

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def _per_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tp = np.diag(self.matrix).astype(np.float64)
        fp = self.matrix.sum(axis=0) - tp
        fn = self.matrix.sum(axis=1) - tp
        return tp, fp, fn

    def iou(self) -> np.ndarray:
        """Per class TP / (TP + FP + FN); NaN for a class absent from labels and prediction."""
        tp, fp, fn = self._per_class()
        return _divide(tp, tp + fp + fn)

    def miou(self) -> float:
        """Mean IoU over classes present in the labels or the prediction (NaN if none counted)."""
        iou = self.iou()
        present = ~np.isnan(iou)
        return float(iou[present].mean()) if present.any() else math.nan

    def overall_accuracy(self) -> float:
        """Share of counted pixels whose class is right (NaN before any pixel is counted)."""
        return float(np.trace(self.matrix) / self.total) if self.total else math.nan

    def precision(self) -> np.ndarray:
        tp, fp, _ = self._per_class()
        return _divide(tp, tp + fp)

    def recall(self) -> np.ndarray:
        tp, _, fn = self._per_class()
        return _divide(tp, tp + fn)

    def f1(self) -> np.ndarray:
        """Per class 2TP / (2TP + FP + FN) (the Dice score); NaN where undefined like IoU."""
        tp, fp, fn = self._per_class()
        return _divide(2 * tp, 2 * tp + fp + fn)

    def to_dict(self, class_table: ClassTable | None = None) -> dict[str, Any]:
        """JSON-ready summary; NaN becomes None. Per-class entries carry names when a table is given."""
        iou, f1, precision, recall = self.iou(), self.f1(), self.precision(), self.recall()
        support = self.matrix.sum(axis=1)
        per_class = []
        for c in range(self.num_classes):
            per_class.append(
                {
                    "id": c,
                    "name": class_table.name_of(c) if class_table is not None else f"class_{c}",
                    "iou": _json_float(iou[c]),
                    "f1": _json_float(f1[c]),
                    "precision": _json_float(precision[c]),
                    "recall": _json_float(recall[c]),
                    "pixels": int(support[c]),
                }
            )
        return {
            "miou": _json_float(self.miou()),
            "overall_accuracy": _json_float(self.overall_accuracy()),
            "pixels": self.total,
            "ignore_index": self.ignore_index,
            "classes": per_class,
            "matrix": self.matrix.tolist(),
        }


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def evaluate_scene(
    mask_pred_path: Path,
    mask_true_path: Path,
    *,
    num_classes: int,
    ignore_index: int = 255,
    matrix: ConfusionMatrix | None = None,
) -> ConfusionMatrix:
    """Compare a predicted mask with a label mask strip by strip; returns (and fills) `matrix`.

    Both must share one pixel grid (size, and CRS/transform where both have them): labels are
    never resampled, since that would invent label values. Nodata of either file is not counted.
    """
    matrix = matrix if matrix is not None else ConfusionMatrix(num_classes, ignore_index)
    if matrix.num_classes != num_classes:
        raise InputError(f"matrix has {matrix.num_classes} classes, expected {num_classes}")
    with open_raster(Path(mask_pred_path)) as pred_ds, open_raster(Path(mask_true_path)) as true_ds:
        _check_same_grid(pred_ds, true_ds, Path(mask_pred_path), Path(mask_true_path))
        # data/raster.py's one rule (nodata value, internal/per-dataset mask), planned once per file
        pred_validity, true_validity = PixelValidity(pred_ds, (1,)), PixelValidity(true_ds, (1,))
        for row in range(0, pred_ds.height, STRIP_ROWS):
            window = Window(0, row, pred_ds.width, min(STRIP_ROWS, pred_ds.height - row))
            try:
                pred = pred_ds.read(1, window=window)
                target = true_ds.read(1, window=window)
                valid = pred_validity.of(pred_ds, pred[None], window) & true_validity.of(true_ds, target[None], window)
            except RasterioError as exc:
                raise DataError(
                    f"{mask_pred_path} / {mask_true_path}: reading rows from {row} failed ({gdal_detail(exc)}); a file may be truncated or corrupt"
                ) from exc
            try:
                matrix.update(pred, target, valid)
            except DataError as exc:  # class ids out of range: name the file that holds them
                raise DataError(f"{mask_true_path if str(exc).startswith('label') else mask_pred_path}: {exc}") from None
    return matrix


def _check_same_grid(a: rasterio.DatasetReader, b: rasterio.DatasetReader, pa: Path, pb: Path) -> None:
    """data/raster.py's grid rule (a hundredth of a pixel of tolerance), with CRS and transform
    compared only where both files have a CRS: a prediction of a scene without georeference has none."""
    parts = grid_mismatches(a, b, one_sided_crs_differs=False)
    if "size" in parts:
        raise DataError(f"{pa} is {a.width} x {a.height} pixels but {pb} is {b.width} x {b.height}; labels must be on the scene's own pixel grid")
    if "crs" in parts:
        raise DataError(f"{pa} is in {a.crs} but {pb} in {b.crs}; labels must be on the scene's own pixel grid")
    if "transform" in parts:
        raise DataError(f"{pa} and {pb} have different geotransforms; labels must be on the scene's own pixel grid")
