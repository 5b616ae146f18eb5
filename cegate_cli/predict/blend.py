"""Blend overlapping tile predictions while keeping only what later tiles can still change.

The scene is cut into square cells (a divisor of the output block size). Each cell holds the
weighted class probabilities and the summed weight of the tiles seen so far. Because tiles come
in row-major order and form a grid, the last tile touching cell (cy, cx) is (last tile row of cy,
last tile column of cx): once that tile is added, the cell is final and is turned into class ids
at once. Only cells overlapped by the next row of tiles wait, so memory is about
(overlap + cell) x width x classes, not tile height x width x classes, and never grows with the
scene's height.

Cells are numpy arrays, not torch tensors: they are small (64 x 64), and torch's intra-op
threads on such small tensors stall badly on a small machine while the reader thread is busy
(docs/design-measurements.md); numpy stays on the calling thread. For the class ids, numpy's argmax over the class axis costs about the same
per pixel as torch's `max(dim).indices` on one thread. Dividing by the summed weight is not
needed for the class (the weight is the same for every class of a pixel), only for the
confidence and the class probabilities (`--probabilities`), which are the same blended
softmax shares the class is chosen from, in percent. Pixels with zero summed weight are nodata: the engine zeroes the weight of nodata
inputs, and the blending weight is strictly positive everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cegate_cli.predict.tiling import Tile, TilePlan

NODATA = 255

# called with (first row, class ids (rows, width) uint8, confidence (rows, width) uint8 or None,
# probabilities (bands, rows, width) uint8 or None)
StripSink = Callable[[int, np.ndarray, "np.ndarray | None", "np.ndarray | None"], None]


class RowAssembler:
    """Collect finished cells into full-width strips of `strip_rows` and hand each on once complete.

    Strips match the output file's block rows, so every write covers whole blocks and GDAL never
    has to read back and recompress a partly written block.
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        strip_rows: int,
        cell: int,
        with_confidence: bool,
        sink: StripSink,
        probability_bands: int = 0,
    ):
        if strip_rows % cell:
            raise ValueError(f"strip height {strip_rows} must be a multiple of the cell size {cell}")
        self.height, self.width = height, width
        self.strip_rows, self.cell = strip_rows, cell
        self.with_confidence = with_confidence
        self.probability_bands = probability_bands
        self.sink = sink
        self._cells_per_row = -(-width // cell)
        self._open: dict[int, list] = {}  # strip -> [ids, confidence, probabilities, cells still missing]

    def add(self, cy: int, cx: int, ids: np.ndarray, confidence: np.ndarray | None, probabilities: np.ndarray | None = None) -> None:
        y = cy * self.cell
        strip = y // self.strip_rows
        entry = self._open.get(strip)
        if entry is None:
            top = strip * self.strip_rows
            rows = min(self.strip_rows, self.height - top)
            conf = np.empty((rows, self.width), np.uint8) if self.with_confidence else None
            probs = np.empty((self.probability_bands, rows, self.width), np.uint8) if self.probability_bands else None
            entry = [np.empty((rows, self.width), np.uint8), conf, probs, -(-rows // self.cell) * self._cells_per_row]
            self._open[strip] = entry
        y0 = y - strip * self.strip_rows
        x0 = cx * self.cell
        entry[0][y0 : y0 + ids.shape[0], x0 : x0 + ids.shape[1]] = ids
        if entry[1] is not None and confidence is not None:
            entry[1][y0 : y0 + ids.shape[0], x0 : x0 + ids.shape[1]] = confidence
        if entry[2] is not None and probabilities is not None:
            entry[2][:, y0 : y0 + ids.shape[0], x0 : x0 + ids.shape[1]] = probabilities
        entry[3] -= 1
        if entry[3] == 0:
            del self._open[strip]
            self.sink(strip * self.strip_rows, entry[0], entry[1], entry[2])

    @property
    def pending(self) -> int:
        """Strips started but not complete (0 after the last tile: everything was written)."""
        return len(self._open)


class BlendAccumulator:
    """Weighted probabilities per cell; finished cells go to a `RowAssembler` as class ids.

    `probability_ids` are the classes whose probabilities (percent) are handed on too, one band
    each, when the assembler collects them.
    """

    def __init__(self, plan: TilePlan, num_classes: int, *, cell: int, assembler: RowAssembler, probability_ids: tuple[int, ...] = ()):
        if len(probability_ids) != assembler.probability_bands:
            raise ValueError(f"{len(probability_ids)} probability classes for {assembler.probability_bands} bands")
        self.plan = plan
        self.probability_ids = list(probability_ids)
        self.num_classes = num_classes
        self.cell = cell
        self.assembler = assembler
        self._cells: dict[tuple[int, int], np.ndarray] = {}
        self._rows_done_at = _finish_schedule(plan.ys, plan.tile_height, plan.height, cell)
        self._cols_done_at = _finish_schedule(plan.xs, plan.tile_width, plan.width, cell)
        self._next_index = 0
        self.peak_cells = 0

    def add(self, tile: Tile, weighted: np.ndarray, weight: np.ndarray) -> None:
        """Add one tile: `weighted` (K, tile h, tile w) is probability x weight, float32, and
        `weight` (tile h, tile w) the weight itself (0 on nodata)."""
        if tile.index != self._next_index:
            raise RuntimeError(f"tiles must arrive in row-major order: expected {self._next_index}, got {tile.index}")
        self._next_index += 1
        g, k = self.cell, self.num_classes
        for cy in range(tile.y // g, (tile.y + tile.valid_height - 1) // g + 1):
            y0, y1 = max(tile.y, cy * g), min(tile.y + tile.valid_height, (cy + 1) * g)
            for cx in range(tile.x // g, (tile.x + tile.valid_width - 1) // g + 1):
                x0, x1 = max(tile.x, cx * g), min(tile.x + tile.valid_width, (cx + 1) * g)
                acc = self._cells.get((cy, cx))
                if acc is None:
                    rows = min(g, self.plan.height - cy * g)
                    cols = min(g, self.plan.width - cx * g)
                    acc = self._cells[(cy, cx)] = np.zeros((k + 1, rows, cols), dtype=np.float32)
                inside = (slice(y0 - cy * g, y1 - cy * g), slice(x0 - cx * g, x1 - cx * g))
                source = (slice(y0 - tile.y, y1 - tile.y), slice(x0 - tile.x, x1 - tile.x))
                acc[(slice(0, k), *inside)] += weighted[(slice(None), *source)]
                acc[(k, *inside)] += weight[source]
        self.peak_cells = max(self.peak_cells, len(self._cells))
        for cy in self._rows_done_at[tile.row]:
            for cx in self._cols_done_at[tile.col]:
                self._finish(cy, cx)

    def _finish(self, cy: int, cx: int) -> None:
        acc = self._cells.pop((cy, cx))
        scores, weight = acc[: self.num_classes], acc[self.num_classes]
        nodata = weight <= 0
        ids = scores.argmax(axis=0).astype(np.uint8)
        ids[nodata] = NODATA
        confidence = None
        if self.assembler.with_confidence:
            best = scores.max(axis=0)
            percent = np.divide(best, weight, out=np.zeros_like(best), where=~nodata) * 100.0
            confidence = np.clip(np.rint(percent), 0, 100).astype(np.uint8)
            confidence[nodata] = NODATA
        probabilities = None
        if self.probability_ids:
            chosen = scores[self.probability_ids]
            shares = np.divide(chosen, weight, out=np.zeros_like(chosen), where=~nodata)
            probabilities = np.clip(np.rint(shares * 100.0), 0, 100).astype(np.uint8)
            probabilities[:, nodata] = NODATA
        self.assembler.add(cy, cx, ids, confidence, probabilities)

    @property
    def pending(self) -> int:
        """Cells still waiting for tiles (0 after the last tile)."""
        return len(self._cells)


def _finish_schedule(starts: tuple[int, ...], size: int, length: int, cell: int) -> list[list[int]]:
    """For each tile position along an axis, the cells whose last covering tile it is."""
    done: list[list[int]] = [[] for _ in starts]
    for c in range(-(-length // cell)):
        lo, hi = c * cell, min((c + 1) * cell, length)
        last = max(i for i, s in enumerate(starts) if s < hi and s + size > lo)
        done[last].append(c)
    return done
