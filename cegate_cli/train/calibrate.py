"""Per-class offsets on the head's class scores, fitted on the validation crops (calibration).

Why: everything that makes a run learn rare classes (the balanced loss, the rare-class crops, the
Dice term) also makes it predict them more often than they occur. On the NAIP tiles background
pixels went to bare land (high recall, low precision), which kept bare land's IoU below the
per-pixel classifier's (docs/benchmarks-real.md). Adding a constant to one class's scores
moves that trade between a class's recall and the others' precision; the offsets that give the
best mIoU on the held-out validation pixels are added to the head's class bias
(`run.weights.with_class_offsets`), so a run's weights carry them and predict needs nothing new.

The search is coordinate ascent over a fixed grid, one class at a time, from zero: each class
takes the grid value with the best validation mIoU (the one nearest its current offset among
equals) if that beats the current mIoU by more than a few pixels' worth of noise
(`required_gain`), so a small validation set moves nothing it cannot tell. A class with too few
validation pixels keeps offset 0 (its IoU there says little). The mIoU searched is the mean over
the classes the validation labels hold: a class absent from them must not be pushed out of the
map to lift the mean (the mean the validation reports also counts classes only predicted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cegate_cli.data.metrics import ConfusionMatrix

OFFSET_GRID = tuple(step / 4 for step in range(-12, 13))
"""Offsets tried for each class (-3 to 3 in quarters): a class's scores are log-odds, so 3 is a
factor of 20 in its odds, far beyond what the loss's class weights (at most 10x) shift."""
MIN_CLASS_PIXELS = 500
"""A class needs this many validation pixels for its offset to be fitted."""
MIN_GAIN = 0.001
"""Validation mIoU a move must add to be kept, at least (see `required_gain`)."""
MAX_PIXELS = 1_000_000
"""Validation pixels kept for the search (an even subsample beyond this), so memory stays bounded."""
PASSES = 3
"""Rounds over the classes; the search stops early when a round moves nothing."""


@dataclass(frozen=True)
class Calibration:
    """What the search found: one offset per class and the validation mIoU before and after."""

    offsets: tuple[float, ...]
    miou_before: float
    miou_after: float
    pixels: int

    @property
    def changed(self) -> bool:
        return any(offset != 0.0 for offset in self.offsets)

    def to_dict(self) -> dict[str, object]:
        """As run.json and the resume state hold it: offsets by output channel (the class id)."""
        return {"offsets": list(self.offsets), "val_miou_before": self.miou_before, "val_miou_after": self.miou_after, "pixels": self.pixels}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(tuple(float(o) for o in data["offsets"]), float(data["val_miou_before"]), float(data["val_miou_after"]), int(data["pixels"]))


def pixel_stride(pixels: int, limit: int = MAX_PIXELS) -> int:
    """Keep every n-th of `pixels` so at most about `limit` remain (deterministic, so a resumed run
    fits the same offsets); the trainer strides its validation pixels with it as it collects them."""
    return max(1, -(-pixels // limit))


def subsample(scores: torch.Tensor, labels: torch.Tensor, limit: int = MAX_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """At most `limit` pixels, every n-th."""
    stride = pixel_stride(len(labels), limit)
    return scores[::stride], labels[::stride]


def required_gain(pixels: int) -> float:
    """The validation mIoU a move must add: `MIN_GAIN`, or 1/sqrt(pixels) where that is larger (the
    order of an mIoU's sampling noise: 0.002 on the NAIP benchmark's 262,144 validation pixels, 0.011
    on 8,000), so offsets are not fitted to a few pixels."""
    return max(MIN_GAIN, 1.0 / math.sqrt(max(1, pixels)))


class _Scorer:
    """The validation mIoU of the scores plus offsets, fast enough for hundreds of trials: a pixel
    whose best class leads the runner-up by more than any two offsets can differ keeps its class
    whatever the offsets, so those pixels are counted once and only the rest are re-decided."""

    def __init__(self, scores: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int) -> None:
        self.num_classes = num_classes
        self.counts = np.bincount(truth, minlength=num_classes)
        self.labeled = self.counts > 0
        self.ignore_index = ignore_index  # a prediction of it (an unused id below num_classes) counts for nothing, as in validation
        top2 = np.partition(scores, -2, axis=1)[:, -2:] if num_classes > 1 else np.zeros((len(truth), 2), np.float32)
        undecided = (top2[:, 1] - top2[:, 0]) <= 2 * max(abs(v) for v in OFFSET_GRID)
        settled = ConfusionMatrix(num_classes, ignore_index)
        settled.update(scores[~undecided].argmax(axis=1), truth[~undecided])
        self.settled = settled.matrix
        self.scores, self.truth = scores[undecided], truth[undecided] * num_classes

    def miou(self, offsets: np.ndarray) -> float:
        return self._miou_of((self.scores + offsets).argmax(axis=1))

    def sweep(self, offsets: np.ndarray, c: int) -> list[float]:
        """The mIoU with class `c`'s offset set to each value of OFFSET_GRID, the others as given:
        the runner-up among the other classes is found once, so each value costs one comparison
        (ties go to the lower class id, as argmax decides them)."""
        others = self.scores + offsets
        others[:, c] = -np.inf
        runner_up = others.argmax(axis=1)
        runner_score = others[np.arange(len(runner_up)), runner_up]
        own = self.scores[:, c]
        result = []
        for value in OFFSET_GRID:
            mine = own + np.float32(value)
            wins = (mine > runner_score) | ((mine == runner_score) & (c < runner_up))
            result.append(self._miou_of(np.where(wins, c, runner_up)))
        return result

    def _miou_of(self, prediction: np.ndarray) -> float:
        k = self.num_classes
        counted = prediction != self.ignore_index
        matrix = ConfusionMatrix(k, self.ignore_index)
        matrix.matrix = self.settled + np.bincount(self.truth[counted] + prediction[counted], minlength=k * k).reshape(k, k)
        return float(matrix.iou()[self.labeled].mean())


def fit_class_offsets(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int = -1) -> Calibration:
    """Offsets for the (N, K) class scores of N labeled validation pixels that maximise their mIoU
    over the classes they hold.

    `labels` holds class ids only (ignored and invalid pixels already left out); `ignore_index`
    is the class table's, so a prediction of it is left out as validation leaves it out."""
    scores, labels = subsample(scores, labels)
    values = scores.detach().float().cpu().numpy()
    truth = labels.detach().cpu().numpy().astype(np.int64)
    offsets = np.zeros(num_classes, dtype=np.float32)
    scorer = _Scorer(values, truth, num_classes, ignore_index)
    before = scorer.miou(offsets) if len(truth) else float("nan")
    fitted = [c for c in range(num_classes) if scorer.counts[c] >= MIN_CLASS_PIXELS]
    best, gain = before, required_gain(len(truth))
    for _ in range(PASSES if len(fitted) > 1 else 0):  # one class alone: every offset predicts it everywhere
        moved = False
        for c in fitted:
            results = scorer.sweep(offsets, c)
            top = max(results)
            choice = min((i for i, miou in enumerate(results) if miou == top), key=lambda i: abs(OFFSET_GRID[i] - offsets[c]))
            if top >= best + gain:
                best, moved = top, True
                offsets[c] = OFFSET_GRID[choice]
        if not moved:
            break
    return Calibration(tuple(float(o) for o in offsets), before, best, int(len(truth)))
