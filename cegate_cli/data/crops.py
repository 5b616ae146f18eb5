"""Training and validation crops, read window by window from GeoTIFF scenes.

A batch is a pure function of (seed, step, rank, batch_size): resuming at step k reproduces the
batches an uninterrupted run would have drawn, and distributed ranks draw different crops.
Nothing here reads a whole scene. Nodata, the file's mask band and padding all end up in one
`valid` mask, and in the labels as the ignore index, so no loss or metric ever sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from cegate_cli.data.folder import ImagePair
from cegate_cli.data.raster import open_raster
from cegate_cli.data.raster_cache import RasterCache
from cegate_cli.data.stats import BandStats
from cegate_cli.data.windows import read_image_window, read_mask_window
from cegate_cli.errors import InputError

# A crop whose labeled (or, unlabeled, valid) share is below this is redrawn a few times; the best
# draw is kept, so sparse labels and nodata collars cost a few extra reads, not empty batches.
MIN_USEFUL_FRACTION = 0.1
RETRIES = 4


@dataclass(frozen=True)
class CropWindow:
    """Where a crop comes from: the scene's position in the sampler's list and its top-left pixel."""

    scene: int
    row: int
    col: int


@dataclass
class CropBatch:
    """Crops ready for the model: normalised images, labels (None when unlabeled) and valid pixels."""

    images: torch.Tensor
    """(B, C, crop, crop) float32, normalised with the run's BandStats; 0 where not valid."""
    masks: torch.Tensor | None
    """(B, crop, crop) int64 class ids; the ignore index where not valid or unlabeled."""
    valid: torch.Tensor
    """(B, crop, crop) bool; False for nodata, masked pixels and padding."""
    windows: tuple[CropWindow, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> CropBatch:
        return CropBatch(
            self.images.to(device),
            None if self.masks is None else self.masks.to(device),
            self.valid.to(device),
            self.windows,
        )


@dataclass(frozen=True)
class Augment:
    """Random flips, 90-degree rotations and per-band gain/offset jitter in normalised units.

    Geometry is applied identically to image, labels and valid mask; the jitter touches valid
    pixels only, so invalid pixels stay exactly 0.
    """

    flips: bool = True
    rotations: bool = True
    gain: float = 0.1
    offset: float = 0.1
    illumination: float = 0.0
    """Strength of a jitter shared by all bands (another sun, exposure or haze): an offset drawn
    from [-s, s] and a contrast gain from [1 / (1 + s), 1 + s] (log-uniform), in normalised units.
    0 draws nothing, so the other draws stay what they were."""

    def apply(
        self, image: np.ndarray, labels: np.ndarray | None, valid: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """One sample: image (C, H, W), labels (H, W) or None, valid (H, W)."""
        k = int(rng.integers(4)) if self.rotations else 0
        flip = bool(rng.integers(2)) if self.flips else False
        channels = image.shape[0]
        gain = rng.uniform(1 - self.gain, 1 + self.gain, size=channels).astype(np.float32)
        offset = rng.uniform(-self.offset, self.offset, size=channels).astype(np.float32)
        if self.illumination > 0:
            shared_gain = np.float32(np.exp(rng.uniform(-1.0, 1.0) * np.log1p(self.illumination)))
            gain, offset = gain * shared_gain, offset + np.float32(rng.uniform(-self.illumination, self.illumination))

        def geometry(a: np.ndarray) -> np.ndarray:
            a = np.rot90(a, k, axes=(-2, -1))
            return np.ascontiguousarray(a[..., ::-1] if flip else a)

        image, valid = geometry(image), geometry(valid)
        labels = None if labels is None else geometry(labels)
        image = np.where(valid[None], image * gain[:, None, None] + offset[:, None, None], 0).astype(np.float32)
        return image, labels, valid

    def apply_batch(self, batch: CropBatch, rng: np.random.Generator) -> CropBatch:
        """A new augmented batch (e.g. the student's strong view, with the teacher's labels in `masks`)."""
        images, masks, valid = [], [], []
        for i in range(len(batch)):
            labels = None if batch.masks is None else batch.masks[i].cpu().numpy()
            im, lb, va = self.apply(batch.images[i].cpu().numpy(), labels, batch.valid[i].cpu().numpy(), rng)
            images.append(im)
            valid.append(va)
            if lb is not None:
                masks.append(lb)
        return CropBatch(
            torch.from_numpy(np.stack(images)).to(batch.images.device),
            None if batch.masks is None else torch.from_numpy(np.stack(masks)).to(batch.masks.device),
            torch.from_numpy(np.stack(valid)).to(batch.valid.device),
            batch.windows,
        )


def _scene_sizes(images: Sequence[Path]) -> tuple[tuple[int, int], ...]:
    sizes = []
    for path in images:
        with open_raster(path) as ds:
            sizes.append((ds.height, ds.width))
    return tuple(sizes)


def _grid_positions(length: int, crop: int) -> list[int]:
    """Top-left offsets of crops covering `length` pixels; the last crop ends at the edge."""
    if length <= crop:
        return [0]
    positions = list(range(0, length - crop + 1, crop))
    if positions[-1] != length - crop:
        positions.append(length - crop)
    return positions


def grid_windows(sizes: Sequence[tuple[int, int]], crop: int, count: int, seed: int) -> tuple[CropWindow, ...]:
    """`count` crops from a regular grid over scenes of the given (height, width), fixed by `seed`."""
    cells = [
        CropWindow(scene, row, col)
        for scene, (height, width) in enumerate(sizes)
        for row in _grid_positions(height, crop)
        for col in _grid_positions(width, crop)
    ]
    if len(cells) <= count:
        return tuple(cells)
    chosen = np.sort(np.random.default_rng([seed, len(cells)]).choice(len(cells), size=count, replace=False))
    return tuple(cells[int(i)] for i in chosen)


def fixed_windows(sources: Sequence[ImagePair] | Sequence[Path], crop: int, count: int, seed: int) -> tuple[CropWindow, ...]:
    """Deterministic validation crops over the sources (read them with `CropSampler.read`)."""
    images = [s.image if isinstance(s, ImagePair) else Path(s) for s in sources]
    return grid_windows(_scene_sizes(images), crop, count, seed)


class CropSampler:
    """Draws crops from labeled pairs or unlabeled images, reading only the windows it needs.

    Datasets are opened lazily and kept per process (see RasterCache); call `close()` or use it as a
    context manager when done.
    """

    def __init__(
        self,
        sources: Sequence[ImagePair] | Sequence[Path],
        band_indexes: Sequence[tuple[int, ...]],
        stats: BandStats,
        crop: int,
        ignore_index: int,
        augment: bool | Augment = True,
        rare_class_weights: Sequence[float] | None = None,
        candidates: int = 1,
    ) -> None:
        """`rare_class_weights` with `candidates` > 1: each crop is the one of `candidates` drawn
        windows whose labels weigh most (sum of per-class weights over labeled pixels), so crops
        of rare classes come up `candidates` times more often without repeating the same places."""
        if not sources:
            raise InputError("no scenes to draw crops from")
        if len(band_indexes) != len(sources):
            raise InputError(f"{len(sources)} scenes but {len(band_indexes)} band index tuples")
        if crop < 1:
            raise InputError(f"crop size must be positive, got {crop}")
        bands = len(stats.mean)
        for src, idx in zip(sources, band_indexes):
            if len(idx) != bands:
                raise InputError(f"{src}: {len(idx)} bands to read, but the statistics have {bands}")
        self.labeled = isinstance(sources[0], ImagePair)
        if any(isinstance(s, ImagePair) != self.labeled for s in sources):
            raise InputError("mix of labeled pairs and unlabeled images; give one kind")
        self.pairs: tuple[ImagePair, ...] = tuple(sources) if self.labeled else ()  # type: ignore[arg-type]
        self.images: tuple[Path, ...] = tuple(s.image if isinstance(s, ImagePair) else Path(s) for s in sources)
        self.band_indexes = tuple(tuple(int(i) for i in idx) for idx in band_indexes)
        self.stats = stats
        self.crop = int(crop)
        self.ignore_index = int(ignore_index)
        self.augment: Augment | None = Augment() if augment is True else (augment or None)
        self.rare_class_weights = None if rare_class_weights is None else np.asarray(rare_class_weights, dtype=np.float64)
        self.candidates = max(1, int(candidates)) if self.labeled and self.rare_class_weights is not None else 1
        self.sizes = _scene_sizes(self.images)
        area = np.array([max(h, 1) * max(w, 1) for h, w in self.sizes], dtype=np.float64)
        self._weights = area / area.sum()
        self._cache = RasterCache()

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, step: int, batch_size: int, seed: int, rank: int = 0) -> CropBatch:
        """The batch of `step`, for process `rank`: the same arguments always give the same batch."""
        if min(step, seed, rank) < 0 or batch_size < 1:
            raise InputError(f"step, seed and rank must be >= 0 and batch_size >= 1, got {step}, {seed}, {rank}, {batch_size}")
        place_rng = np.random.default_rng([seed, step, rank, 0])
        # A separate stream for augmentation: switching it off does not change which crops are drawn.
        augment_rng = np.random.default_rng([seed, step, rank, 1])
        items = [self._draw(place_rng) for _ in range(batch_size)]
        if self.augment is not None:
            items = [(w, *self.augment.apply(im, lb, va, augment_rng)) for w, im, lb, va in items]
        return self._collate(items)

    def read(self, windows: Sequence[CropWindow]) -> CropBatch:
        """Crops at fixed places, without augmentation (validation)."""
        return self._collate([(w, *self._read(w)) for w in windows])

    def fixed_windows(self, count: int, seed: int) -> tuple[CropWindow, ...]:
        """Deterministic validation places over this sampler's scenes."""
        return grid_windows(self.sizes, self.crop, count, seed)

    def _draw(self, rng: np.random.Generator) -> tuple[CropWindow, np.ndarray, np.ndarray | None, np.ndarray]:
        if self.candidates == 1:
            return self._draw_one(rng)
        assert self.rare_class_weights is not None
        weights = np.append(self.rare_class_weights, 0.0)  # index K and beyond: ignored pixels weigh nothing
        best, best_weight = None, -1.0
        for _ in range(self.candidates):
            drawn = self._draw_one(rng)
            labels = drawn[2]
            assert labels is not None
            ids = np.where(labels == self.ignore_index, len(weights) - 1, np.minimum(labels, len(weights) - 1))
            weight = float(weights[ids].sum())
            if weight > best_weight:
                best, best_weight = drawn, weight
        assert best is not None
        return best

    def _draw_one(self, rng: np.random.Generator) -> tuple[CropWindow, np.ndarray, np.ndarray | None, np.ndarray]:
        best: tuple[int, tuple[CropWindow, np.ndarray, np.ndarray | None, np.ndarray]] | None = None
        for _ in range(RETRIES + 1):
            scene = int(rng.choice(len(self.images), p=self._weights))
            height, width = self.sizes[scene]
            window = CropWindow(scene, int(rng.integers(max(height - self.crop, 0) + 1)), int(rng.integers(max(width - self.crop, 0) + 1)))
            image, labels, valid = self._read(window)
            useful = valid if labels is None else labels != self.ignore_index
            score = int(useful.sum())
            if best is None or score > best[0]:
                best = (score, (window, image, labels, valid))
            if score >= MIN_USEFUL_FRACTION * self.crop * self.crop:
                break
        assert best is not None
        return best[1]

    def _read(self, where: CropWindow) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Normalised image (C, crop, crop), labels or None, valid; padded past the scene's edge."""
        height, width = self.sizes[where.scene]
        h, w = min(self.crop, height - where.row), min(self.crop, width - where.col)
        window = Window(where.col, where.row, w, h)
        raw, valid_part = read_image_window(self._cache.image(self.images[where.scene]), self.band_indexes[where.scene], window)
        channels = len(self.stats.mean)
        image = np.zeros((channels, self.crop, self.crop), dtype=np.float32)
        valid = np.zeros((self.crop, self.crop), dtype=bool)
        valid[:h, :w] = valid_part
        image[:, :h, :w] = np.where(valid_part[None], self.stats.normalize(raw), 0)
        labels = None
        if self.labeled:
            pair = self.pairs[where.scene]
            labels = np.full((self.crop, self.crop), self.ignore_index, dtype=np.int64)
            source = pair.mask_source
            labels[:h, :w] = read_mask_window(self._cache.mask(source), window, nodata_value=source.nodata_value, ignore_index=self.ignore_index)
            labels[~valid] = self.ignore_index
        return image, labels, valid

    def _collate(self, items: Sequence[tuple[CropWindow, np.ndarray, np.ndarray | None, np.ndarray]]) -> CropBatch:
        return CropBatch(
            images=torch.from_numpy(np.stack([it[1] for it in items])),
            masks=torch.from_numpy(np.stack([it[2] for it in items])) if self.labeled else None,  # type: ignore[misc]
            valid=torch.from_numpy(np.stack([it[3] for it in items])),
            windows=tuple(it[0] for it in items),
        )

    def close(self) -> None:
        self._cache.close()

    def __enter__(self) -> CropSampler:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
