"""Where the model looks: a plan of overlapping windows over a scene, and how much each one counts.

Tiles step by a regular stride along each axis, so neighbours overlap by exactly `overlap`
pixels. The last tile of a row or column may stick out of the scene, and a scene smaller than
one tile is covered by one tile rounded up to the model's patch multiple.
What lies outside the scene is filled by reflection so the model sees plausible texture
instead of a hard black edge; those pixels are never blended into the output.

The blending weight tapers towards a tile's inner edges, where a convolution or attention window
sees the least context, but stays flat on sides that lie on the scene border: no other tile can
cover those pixels, and down-weighting them would only amplify rounding noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from rasterio.windows import Window

from cegate_cli.errors import InputError


@dataclass(frozen=True)
class Tile:
    """One model input: `height` x `width` pixels at (`y`, `x`); the first `valid_*` lie in the scene."""

    index: int
    row: int
    col: int
    y: int
    x: int
    height: int
    width: int
    valid_height: int
    valid_width: int
    borders: tuple[bool, bool, bool, bool]  # top, bottom, left, right lie on the scene border

    @property
    def window(self) -> Window:
        """The part of the tile inside the scene, as a rasterio window."""
        return Window(self.x, self.y, self.valid_width, self.valid_height)


@dataclass(frozen=True)
class TilePlan:
    """All tiles of a scene in row-major order, which the streaming blender relies on."""

    height: int
    width: int
    tile_height: int
    tile_width: int
    overlap: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    _weights: dict[tuple[bool, bool, bool, bool], np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def __iter__(self) -> Iterator[Tile]:
        for i in range(len(self.ys)):
            for j in range(len(self.xs)):
                yield self.tile(i, j)

    def tile(self, row: int, col: int) -> Tile:
        y, x = self.ys[row], self.xs[col]
        return Tile(
            index=row * len(self.xs) + col,
            row=row,
            col=col,
            y=y,
            x=x,
            height=self.tile_height,
            width=self.tile_width,
            valid_height=min(self.tile_height, self.height - y),
            valid_width=min(self.tile_width, self.width - x),
            borders=(row == 0, row == len(self.ys) - 1, col == 0, col == len(self.xs) - 1),
        )

    def weight(self, tile: Tile) -> np.ndarray:
        """Blending weight (tile_height, tile_width), float32, > 0 everywhere; cached per border set."""
        cached = self._weights.get(tile.borders)
        if cached is None:
            top, bottom, left, right = tile.borders
            wy = axis_weight(self.tile_height, self.overlap, taper_start=not top, taper_end=not bottom)
            wx = axis_weight(self.tile_width, self.overlap, taper_start=not left, taper_end=not right)
            cached = np.outer(wy, wx).astype(np.float32)
            self._weights[tile.borders] = cached
        return cached


def plan_tiles(height: int, width: int, *, tile: int, overlap: int, multiple_of: int = 1) -> TilePlan:
    """Plan tiles of `tile` x `tile` pixels (shrunk to the scene, rounded up to `multiple_of`).

    `multiple_of` is what the model needs, e.g. a ViT's patch size: every tile side is a
    multiple of it, including the shrunk tiles of a scene smaller than `tile`.
    """
    if height < 1 or width < 1:
        raise InputError(f"scene of {width} x {height} pixels is empty")
    if multiple_of < 1:
        raise InputError(f"multiple_of must be at least 1, got {multiple_of}")
    if tile < multiple_of or tile % multiple_of:
        raise InputError(f"tile size {tile} must be a positive multiple of {multiple_of} (the model's patch size)")
    if not 0 <= overlap < tile:
        raise InputError(f"overlap {overlap} must be at least 0 and smaller than the tile size {tile}")
    tile_height = min(tile, _round_up(height, multiple_of))
    tile_width = min(tile, _round_up(width, multiple_of))
    return TilePlan(
        height=height,
        width=width,
        tile_height=tile_height,
        tile_width=tile_width,
        overlap=overlap,
        ys=axis_starts(height, tile_height, overlap),
        xs=axis_starts(width, tile_width, overlap),
    )


def axis_starts(length: int, size: int, overlap: int) -> tuple[int, ...]:
    """Start offsets of tiles of `size` covering `length` with a regular stride of size - overlap.

    The last tile may stick out past the scene edge; the reader fills that part by reflection.
    Moving it back inside instead would give it a large overlap with its neighbour, and the
    blender would then have to keep that whole overlap across the scene's width, several times
    the cells a regular overlap needs on a wide scene (docs/design-measurements.md). With a regular
    stride every overlap is exactly `overlap`, and with the usual sizes (512 / 64, 224 / 32)
    the stride is a multiple of the blender's 64-pixel cells, so the band shared by two rows of
    tiles is exactly one row of cells.
    """
    if length <= size:
        return (0,)
    stride = size - overlap
    count = -(-(length - size) // stride) + 1
    return tuple(k * stride for k in range(count))


@lru_cache(maxsize=64)
def _ramp(length: int) -> np.ndarray:
    """Raised-cosine ramp of `length` samples, strictly between 0 and 1 (sample centres)."""
    t = (np.arange(length, dtype=np.float64) + 0.5) / length
    return 0.5 - 0.5 * np.cos(np.pi * t)


def axis_weight(size: int, overlap: int, *, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D weight: flat 1, with a raised-cosine ramp of `overlap` samples on each tapered end.

    Two neighbours overlapping by exactly `overlap` then sum to 1 (sin^2 + cos^2); larger
    overlaps are fine too because the blender divides by the summed weight.
    """
    weight = np.ones(size, dtype=np.float64)
    ramp_length = min(overlap, size // 2)
    if ramp_length > 0:
        ramp = _ramp(ramp_length)
        if taper_start:
            weight[:ramp_length] = ramp
        if taper_end:
            weight[size - ramp_length :] = ramp[::-1]
    return weight


def pad_to(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad (..., h, w) at the bottom and right to (..., height, width).

    numpy's reflection repeats as often as needed, so it also works for a strip narrower than
    the padding (a 3-pixel-wide scene in a 16-pixel tile; a 1-pixel one repeats its edge).
    """
    pad_h, pad_w = height - pixels.shape[-2], width - pixels.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return pixels
    pad = [(0, 0)] * (pixels.ndim - 2) + [(0, pad_h), (0, pad_w)]
    return np.pad(pixels, pad, mode="reflect")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
