"""Map a whole scene with a model, tile by tile, without ever holding the scene in memory.

The loop: read a batch of tiles (in a background thread, so disk and model overlap), run the
model, turn logits into probabilities times the blending weight on the model's device, and hand
them to the blender, which finishes cells as soon as no later tile can touch them and passes
complete block rows to the writer. Peak memory depends on tile size, overlap, batch size,
classes and scene width, never on scene height (and only weakly on width, see blend.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from cegate_cli.data.classes import ClassTable
from cegate_cli.data.raster import alpha_as_data_note, open_raster
from cegate_cli.data.stats import BandStats
from cegate_cli.errors import InputError
from cegate_cli.predict.blend import BlendAccumulator, RowAssembler
from cegate_cli.predict.reader import SceneReader
from cegate_cli.predict.tiling import Tile, TilePlan, plan_tiles
from cegate_cli.predict.writer import NODATA, MaskWriter, RasterGrid

CELL = 64  # blending cell: divides the writer's 256/512 blocks; small enough to keep memory flat

Model = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SceneResult:
    """What one scene produced; `class_counts` maps class id -> pixels (nodata not included)."""

    source: Path
    mask_path: Path
    confidence_path: Path | None
    width: int
    height: int
    crs: str | None
    class_counts: dict[int, int]
    nodata_pixels: int
    tiles: int
    seconds: float
    warnings: tuple[str, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = field(default_factory=tuple)
    """What the user may want to know that is no problem (an alpha-tagged band read as data)."""
    blend_peak_mib: float = 0.0  # most memory the blender's cells held at once
    probabilities_path: Path | None = None


def count_tiles(src: Path, *, tile: int = 512, overlap: int = 64, multiple_of: int = 1) -> int:
    """How many tiles `predict_scene` will run on `src` (for a progress bar's total)."""
    with open_raster(Path(src)) as dataset:
        return len(plan_tiles(dataset.height, dataset.width, tile=tile, overlap=overlap, multiple_of=multiple_of))


def predict_scene(
    model: Model,
    src: Path,
    dst_mask: Path,
    *,
    band_indexes: tuple[int, ...],
    stats: BandStats,
    class_table: ClassTable,
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    confidence_path: Path | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[int], None] | None = None,
    multiple_of: int = 1,
    probabilities_path: Path | None = None,
    run_id: str | None = None,
) -> SceneResult:
    """Write the class mask of `src` to `dst_mask` (and optionally confidence and class probabilities).

    `model` maps normalised float32 (B, C, h, w) on `device` to logits (B, K, h, w), K being
    `class_table.num_classes`; it must already live on `device`. An `nn.Module` is put in eval
    mode for the call and restored afterwards. `progress` is called with the number of tiles
    finished after each batch. `multiple_of` (e.g. the ViT patch size) constrains tile sides.
    `probabilities_path` gets one band per class of `class_table`: the blended softmax
    probability the class was chosen from, in percent. `run_id` is tagged on every raster, so a
    later batch can tell another run's maps from its own.
    """
    src, dst_mask = Path(src), Path(dst_mask)
    confidence_path = Path(confidence_path) if confidence_path is not None else None
    probabilities_path = Path(probabilities_path) if probabilities_path is not None else None
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    for output in (dst_mask, confidence_path, probabilities_path):
        if output is not None and src.exists() and output.exists() and output.resolve() == src.resolve():
            raise InputError(f"{output}: output would overwrite the input scene; choose another output folder")
    num_classes = class_table.num_classes
    if not 1 <= num_classes <= NODATA:
        raise InputError(f"the class table needs 1 to {NODATA} class ids, got {num_classes}")
    device = torch.device(device)
    started = time.perf_counter()

    with open_raster(src) as dataset:
        reader = SceneReader(dataset, src, tuple(band_indexes), stats)
        grid = RasterGrid.of(dataset)
        plan = plan_tiles(grid.height, grid.width, tile=tile, overlap=overlap, multiple_of=multiple_of)
        counts = np.zeros(256, dtype=np.int64)

        probability_ids = tuple(sorted(class_table.ids)) if probabilities_path is not None else ()
        writer = MaskWriter(
            dst_mask,
            grid,
            class_table,
            confidence_path=confidence_path,
            probabilities_path=probabilities_path,
            probability_ids=probability_ids,
            source=src,
            run_id=run_id,
        )
        with _bounded_block_cache(dataset, plan), writer:

            def write_strip(row: int, ids: np.ndarray, confidence: np.ndarray | None, probabilities: np.ndarray | None) -> None:
                counts[:] += np.bincount(ids.ravel(), minlength=256)
                writer.write_rows(row, ids, confidence, probabilities)

            assembler = RowAssembler(
                grid.height,
                grid.width,
                strip_rows=writer.strip_rows,
                cell=CELL,
                with_confidence=confidence_path is not None,
                sink=write_strip,
                probability_bands=len(probability_ids),
            )
            blender = BlendAccumulator(plan, num_classes, cell=CELL, assembler=assembler, probability_ids=probability_ids)
            with _eval_mode(model), torch.inference_mode():
                for tiles, pixels, weights in _prefetched_batches(reader, plan, batch_size):
                    logits = _run_model(model, pixels, device, autocast_dtype, num_classes)
                    for position, tile_ in enumerate(tiles):
                        weight = weights[position]
                        probabilities = torch.softmax(logits[position].float(), dim=0)
                        probabilities.mul_(torch.from_numpy(weight).to(device))
                        blender.add(tile_, probabilities.cpu().numpy(), weight)
                    if progress is not None:
                        progress(len(tiles))
            if blender.pending or assembler.pending:
                raise RuntimeError(f"internal error: {blender.pending} cells / {assembler.pending} strips never finished")

    return SceneResult(
        source=src,
        mask_path=dst_mask,
        confidence_path=confidence_path,
        width=grid.width,
        height=grid.height,
        crs=grid.crs.to_string() if grid.crs is not None else None,
        class_counts={int(i): int(counts[i]) for i in np.flatnonzero(counts[:NODATA])},
        nodata_pixels=int(counts[NODATA]),
        tiles=len(plan),
        seconds=time.perf_counter() - started,
        warnings=_grid_warnings(src, grid),
        notes=_alpha_notes(src, reader),
        blend_peak_mib=blender.peak_cells * (num_classes + 1) * CELL * CELL * 4 / 2**20,
        probabilities_path=probabilities_path,
    )


def _run_model(
    model: Model,
    pixels: np.ndarray,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    num_classes: int,
) -> torch.Tensor:
    """Logits (B, K, h, w) on `device`, checked against what the blender needs.

    Softmax and weighting happen per tile afterwards, so only one tile's probabilities exist
    besides the logits.
    """
    inputs = torch.from_numpy(pixels).to(device)
    autocast = torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    with autocast:
        logits = model(inputs)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        raise InputError(f"the model must return a (B, K, h, w) tensor of logits, got {_describe(logits)}")
    if tuple(logits.shape[2:]) != tuple(inputs.shape[2:]) or logits.shape[0] != inputs.shape[0]:
        raise InputError(
            f"the model returned logits of shape {tuple(logits.shape)} for input {tuple(inputs.shape)}; "
            "it must return one score per class at the input's height and width"
        )
    if logits.shape[1] != num_classes:
        raise InputError(
            f"the model returns {logits.shape[1]} class scores but the class table has ids 0..{num_classes - 1}; use the class table the model was trained with"
        )
    return logits


def _prefetched_batches(reader: SceneReader, plan: TilePlan, batch_size: int) -> Iterator[tuple[list[Tile], np.ndarray, np.ndarray]]:
    """Batches of (tiles, pixels (B, C, h, w), weight x valid (B, h, w)); the next one is read
    in a worker thread while the caller runs the model on the current one.

    Only the worker thread touches the dataset, so GDAL never sees concurrent reads.
    """
    tiles = list(plan)
    batches = [tiles[i : i + batch_size] for i in range(0, len(tiles), batch_size)]

    def read(batch: list[Tile]) -> tuple[list[Tile], np.ndarray, np.ndarray]:
        pixels, weights = [], []
        for tile_ in batch:
            data, valid = reader.read(tile_)
            pixels.append(data)
            weights.append(plan.weight(tile_) * valid)
        return batch, np.stack(pixels), np.stack(weights)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cegate-read") as pool:
        future = pool.submit(read, batches[0])
        for k in range(len(batches)):
            current = future.result()
            if k + 1 < len(batches):
                future = pool.submit(read, batches[k + 1])
            yield current


CACHE_MIN, CACHE_MAX = 32 * 2**20, 512 * 2**20


def _bounded_block_cache(dataset: Any, plan: TilePlan) -> contextlib.AbstractContextManager[Any]:
    """Cap GDAL's block cache at one row of tiles (plus one row of blocks) of the input.

    GDAL's default cache is 5% of RAM and reading a whole scene fills it, so memory would grow
    with the scene up to that cap. A row of tiles spans this many rows of blocks; with all of
    them cached, overlapping tiles (beside and below) find their blocks without decoding them
    again. A GDAL_CACHEMAX set by the user is left alone.
    """
    if os.environ.get("GDAL_CACHEMAX"):
        return contextlib.nullcontext()
    block_rows = min(dataset.block_shapes[0][0], 1024)
    sample_bytes = sum(np.dtype(dtype).itemsize for dtype in dataset.dtypes)
    wanted = (plan.tile_height + block_rows) * plan.width * sample_bytes
    return rasterio.Env(GDAL_CACHEMAX=int(min(max(wanted, CACHE_MIN), CACHE_MAX)))


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for the prediction (dropout off, batch-norm statistics frozen), then restore."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _grid_warnings(src: Path, grid: RasterGrid) -> tuple[str, ...]:
    if grid.crs is not None:
        return ()
    if grid.gcps is not None:
        return (
            f"{src.name}: georeferenced by ground control points only; the mask carries the same GCPs, "
            "but polygons need a CRS and an affine transform (warp the scene first, e.g. gdalwarp)",
        )
    return (
        f"{src.name}: has no CRS; the mask has the same pixel grid but no georeference, "
        "and polygons cannot be made from it (assign one first, e.g. gdal_edit.py -a_srs EPSG:...)",
    )


def _alpha_notes(src: Path, reader: SceneReader) -> tuple[str, ...]:
    """Once per scene, not per tile: its alpha-tagged band is read as data, not as a mask (a note,
    not a warning: that is what NAIP-style files need)."""
    return () if reader.alpha_as_data is None else (f"{src.name}: {alpha_as_data_note(reader.alpha_as_data)}",)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


__all__: Sequence[str] = ("SceneResult", "count_tiles", "predict_scene")
