"""Many scenes in one call: output naming, skipping, and per-file failures (inputs.py finds the scenes).

A folder of 200 scenes with one truncated file must still produce 199 masks, so each file runs
in its own try: a file the user can fix (unreadable, missing bands, corrupt pixels) is reported
with its message and the loop goes on; errors that would hit every file (a broken model, out of
memory, Ctrl-C) still stop everything. Outputs that already exist are kept unless `overwrite`,
which makes an interrupted batch cheap to resume; a mask whose polygons are missing is
vectorised again without predicting again. With `VectorOptions(merge=True)` the scenes'
polygons are merged into one layer once the batch ends (vector_merge.py says when).

The library prints nothing; the CLI passes a `BatchProgress` to draw its bars.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from rasterio.errors import RasterioError

from cegate_cli.data.classes import ClassTable
from cegate_cli.data.raster import open_raster
from cegate_cli.data.stac import scene_name
from cegate_cli.data.stats import BandStats
from cegate_cli.errors import CegateError, InputError, MappingInterrupted
from cegate_cli.infra.atomic import os_error_words, sweep_stale_temporaries
from cegate_cli.infra.progress import BatchProgress, phase  # the base class lives where displays can import it without torch
from cegate_cli.predict.engine import Model, SceneResult, count_tiles, predict_scene
from cegate_cli.predict.legend import write_legend, write_polygon_style
from cegate_cli.predict.outputs import raster_output, switched_outputs, vector_format, vector_side_files
from cegate_cli.predict.vector_merge import MergeOutcome, check_merge, merge_polygons, merged_path
from cegate_cli.predict.vector_options import VectorOptions
from cegate_cli.predict.vectorize import VectorResult, vectorize_mask
from cegate_cli.predict.writer import made_by_run

Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class PredictOptions:
    """How scenes are tiled and run (see `predict_scene`), and which optional rasters of
    predict/outputs.py each scene gets (one switch per output, named after it)."""

    tile: int = 512
    overlap: int = 64
    batch_size: int = 4
    multiple_of: int = 1
    device: torch.device | str = "cpu"
    autocast_dtype: torch.dtype | None = None
    confidence: bool = False
    probabilities: bool = False


@dataclass(frozen=True)
class OutputPaths:
    """One scene's outputs: the mask, the polygons, and one field per optional raster of
    predict/outputs.py (None: not asked for)."""

    mask: Path
    vector: Path | None
    confidence: Path | None
    probabilities: Path | None = None

    def rasters(self) -> list[Path]:
        """The GeoTIFFs mapping the scene writes (the mask first)."""
        return [self.mask] + [p for p in (getattr(self, o.name) for o in switched_outputs()) if p is not None]

    def all(self) -> list[Path]:
        return [p for p in (self.mask, self.vector) if p is not None] + self.rasters()[1:]

    def legend(self) -> tuple[Path, ...]:
        """The mask's side files: GDAL .aux.xml and QGIS .qml (written with the mask)."""
        side_files = raster_output("mask").side_files
        assert side_files is not None
        return side_files(self.mask)

    def vector_style(self) -> tuple[Path, ...]:
        """The polygons' side files: their QGIS .qml (written with them); none without polygons."""
        return () if self.vector is None else vector_side_files(self.vector)


@dataclass(frozen=True)
class FileOutcome:
    """One input's fate. `message` explains a failure (or what a skip reused)."""

    source: Path
    status: Status
    outputs: OutputPaths
    scene: SceneResult | None = None
    vectors: VectorResult | None = None
    message: str | None = None


@dataclass
class BatchSummary:
    outcomes: list[FileOutcome] = field(default_factory=list)
    merged: MergeOutcome | None = None
    """The batch's one polygon layer (`VectorOptions(merge=True)`); None when not asked for."""

    @property
    def done(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "done"]

    @property
    def skipped(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "skipped"]

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        """False if any file, or the merged layer, failed: the CLI exits non-zero."""
        return not self.failed and (self.merged is None or self.merged.status != "failed")


def output_paths(source: Path, out_dir: Path, *, vector_format: str | None, **switches: bool) -> OutputPaths:
    """OUT/<stem>.mask.tif, OUT/<stem><the format's suffix> and OUT/<stem>.<name>.tif for each
    optional raster switched on (`confidence=True`); a STAC item's stem is its id."""
    stem = scene_name(source)
    out_dir = Path(out_dir)
    unknown = [name for name in switches if name not in {o.name for o in switched_outputs()}]
    if unknown:
        raise TypeError(f"output_paths: no optional output {unknown[0]!r}")
    return OutputPaths(
        mask=out_dir / f"{stem}{raster_output('mask').suffix}",
        vector=out_dir / f"{stem}{_vector_suffix(vector_format)}" if vector_format else None,
        **{o.name: out_dir / f"{stem}{o.suffix}" if switches.get(o.name) else None for o in switched_outputs()},  # type: ignore[arg-type]
    )


def _vector_suffix(name: str) -> str:
    try:
        return vector_format(name).suffix
    except KeyError:
        raise InputError(f"vector format {name!r} is not registered (predict/outputs.py)") from None


def predict_many(
    model: Model,
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    bands: tuple[int, ...] | Callable[[Path], tuple[int, ...]],
    stats: BandStats,
    class_table: ClassTable,
    options: PredictOptions = PredictOptions(),
    vectors: VectorOptions = VectorOptions(),
    overwrite: bool = False,
    progress: BatchProgress | None = None,
    scene_context: Callable[[Path], AbstractContextManager[object]] | None = None,
    run_id: str | None = None,
) -> BatchSummary:
    """Predict (and vectorise) every input; failures are collected, not raised. With
    `vectors.merge`, the scenes' polygons are then merged into one layer (`summary.merged`).
    `run_id` (the run whose model this is) is tagged on every raster written; callers refuse maps
    another run left in `out_dir` first (check_kept_outputs, before the model loads).

    `bands` is a fixed tuple of 1-based band indexes or a function giving them per file (e.g.
    `lambda p: match_bands(choice, p)`, whose errors then fail only that file). `scene_context`,
    when given, is entered around each scene's prediction (e.g. to feed a backbone the scene's
    own pixel size and month); its errors, too, fail only that file.
    """
    progress = progress or BatchProgress()
    sources = [Path(p) for p in inputs]
    switches = {o.name: bool(getattr(options, o.name)) for o in switched_outputs()}
    check_unique_stems(sources)
    check_out_dir(out_dir)
    if vectors.merge:
        check_merge_target(sources, out_dir, vectors, overwrite, switches)
    if Path(out_dir).is_dir():  # temporaries of an earlier run that was killed (kill -9, out of memory)
        sweep_stale_temporaries(out_dir)
    summary = BatchSummary()
    for index, source in enumerate(sources):
        outputs = output_paths(source, out_dir, vector_format=vectors.fmt, **switches)
        try:
            outcome = _one_file(
                model, source, outputs, index, len(sources), bands, stats, class_table, options, vectors, overwrite, progress, scene_context, run_id
            )
        except KeyboardInterrupt as exc:
            raise interrupted(summary, sources, index, out_dir, overwrite) from exc
        summary.outcomes.append(outcome)
        progress.file_finished(outcome)
    if vectors.merge:
        summary.merged = merge_batch(summary, out_dir, vectors, class_table, overwrite, progress)
    return summary


def check_kept_outputs(sources: Sequence[Path], out_dir: Path, run_id: str | None, overwrite: bool, switches: dict[str, bool]) -> None:
    """Refuse, before anything is mapped, to keep maps that another run made (their CEGATE_RUN tag
    names another run_id): a batch skips finished scenes, and a retrained run would otherwise
    mix its maps with the old run's. Untagged maps (older cegate) are kept as before."""
    if run_id is None or overwrite or not Path(out_dir).is_dir():
        return
    foreign = [
        (source, path, made)
        for source in sources
        for path in output_paths(source, out_dir, vector_format=None, **switches).rasters()
        if path.exists() and (made := made_by_run(path)) is not None and made != run_id
    ]
    if foreign:
        _, path, made = foreign[0]
        scenes = len({source for source, _, _ in foreign})
        raise InputError(
            f"{path}: made by another run (run_id {made[:12]}), and {scenes} scene(s) in {out_dir} hold that run's maps; "
            "add --overwrite to replace them with this run's maps, or choose another output folder"
        )


def check_merge_target(sources: Sequence[Path], out_dir: Path, vectors: VectorOptions, overwrite: bool, switches: dict[str, bool]) -> None:
    """Refuse, before anything is mapped, a merged layer that could not end up holding the batch
    (vector_merge.py: an existing one kept while scenes are still to map, a scene named like it)."""
    assert vectors.fmt is not None
    pending = [] if overwrite else [s for s in sources if _pending(output_paths(s, out_dir, vector_format=vectors.fmt, **switches))]
    check_merge(vectors.fmt, [scene_name(s) for s in sources], out_dir, pending, overwrite)


def merge_batch(
    summary: BatchSummary,
    out_dir: Path,
    vectors: VectorOptions,
    class_table: ClassTable,
    overwrite: bool = False,
    progress: BatchProgress | None = None,
) -> MergeOutcome:
    """The batch's one polygon layer, from its scenes' polygon files, once every scene is mapped
    (written, kept, or not written with the reason; vector_merge.py)."""
    assert vectors.fmt is not None
    path = merged_path(out_dir, vectors.fmt)
    total = len(summary.outcomes)
    if summary.failed:
        earlier = "; the one there is from an earlier run" if path.exists() else ""
        return MergeOutcome(
            path,
            "skipped",
            message=(
                f"{path}: not written, {len(summary.failed)} of {total} scenes failed and it holds whole batches; "
                f"run the same command again once they map (finished scenes are skipped){earlier}"
            ),
        )
    if path.exists() and not overwrite:
        if not summary.done:
            return MergeOutcome(path, "skipped", message=f"{path}: exists (use --overwrite to redo)")
        return MergeOutcome(
            path,
            "failed",
            message=(  # check_merge_target refuses this before mapping
                f"{path}: exists and does not hold the {len(summary.done)} scene(s) mapped now; remove it and run again to merge them"
            ),
        )
    parts = [(scene_name(o.source), o.outputs.vector) for o in summary.outcomes if o.outputs.vector is not None and o.outputs.vector.exists()]
    if not parts:
        return MergeOutcome(path, "skipped", message=f"{path}: not written, no scene has polygons (none has a CRS)")
    try:
        with phase(progress, f"merging the polygons of {len(parts)} scenes into {path}"):
            layer = merge_polygons(parts, path, fmt=vectors.fmt, class_table=class_table)
    except (CegateError, OSError) as exc:
        return MergeOutcome(path, "failed", message=_message(path, exc))
    except KeyboardInterrupt as exc:
        finished = tuple(o.source for o in summary.outcomes)
        raise MappingInterrupted(
            f"Interrupted: {out_dir}: all {total} scenes finished; stopped while merging their polygons into {path.name}, "
            "which is left unwritten (nothing half-written); run the same command again to write it (finished scenes are skipped)",
            finished,
            total,
        ) from exc
    return MergeOutcome(path, "done", layer)


def _pending(outputs: OutputPaths) -> bool:
    """Whether a scene has outputs still to write (what a batch without overwrite would map or vectorise)."""
    need_predict, need_vector, _ = _work(outputs, overwrite=False)
    return need_predict or need_vector


def _work(outputs: OutputPaths, overwrite: bool) -> tuple[bool, bool, OutputPaths]:
    """Whether a scene is to be mapped, and vectorised; and its outputs, less the polygons that an
    existing mask without a CRS never gets (nothing is missing there)."""
    need_predict = overwrite or any(not p.exists() for p in outputs.rasters())
    need_vector = outputs.vector is not None and (overwrite or need_predict or not outputs.vector.exists())
    if need_vector and not need_predict and not _has_crs(outputs.mask):
        return need_predict, False, replace(outputs, vector=None)
    return need_predict, need_vector, outputs


def interrupted(summary: BatchSummary, sources: Sequence[Path], index: int, out_dir: Path, overwrite: bool) -> MappingInterrupted:
    """Ctrl-C while mapping `sources[index]`: which scenes are finished, that nothing half-written
    is left (every output takes its final name only once complete), and how to map the rest."""
    finished = tuple(o.source for o in summary.outcomes if o.status != "failed")
    failed = len(summary.failed)
    later = len(sources) - index - 1
    parts = [f"{len(finished)} of {len(sources)} scenes finished{_names(finished)}"]
    if failed:
        parts.append(f"{failed} failed")
    parts.append(f"stopped in {sources[index].name}, which left nothing half-written (outputs take their names only once complete)")
    if later:
        parts.append(f"{later} not started")
    again = "run the same command without --overwrite" if overwrite else "run the same command again"
    message = f"Interrupted: {out_dir}: {', '.join(parts)}; {again} to map the rest (finished scenes are skipped)"
    return MappingInterrupted(message, finished, len(sources))


def _names(paths: Sequence[Path], shown: int = 3) -> str:
    if not paths:
        return ""
    listed = ", ".join(p.name for p in paths[:shown])
    return f" ({listed}{f' and {len(paths) - shown} more' if len(paths) > shown else ''})"


def _one_file(
    model: Model,
    source: Path,
    outputs: OutputPaths,
    index: int,
    total: int,
    bands: tuple[int, ...] | Callable[[Path], tuple[int, ...]],
    stats: BandStats,
    class_table: ClassTable,
    options: PredictOptions,
    vectors: VectorOptions,
    overwrite: bool,
    progress: BatchProgress,
    scene_context: Callable[[Path], AbstractContextManager[object]] | None = None,
    run_id: str | None = None,
) -> FileOutcome:
    need_predict, need_vector, outputs = _work(outputs, overwrite)
    if not need_predict:
        try:
            _restore_legend(outputs, class_table, restyle=not need_vector)
        except OSError as exc:
            progress.file_started(source, index, total, 0)
            return FileOutcome(source, "failed", outputs, message=_message(source, exc))
    if not need_predict and not need_vector:
        progress.file_started(source, index, total, 0)
        return FileOutcome(source, "skipped", outputs, message="outputs exist (use --overwrite to redo)")
    scene = vector = None
    try:
        tiles = count_tiles(source, tile=options.tile, overlap=options.overlap, multiple_of=options.multiple_of) if need_predict else 0
        progress.file_started(source, index, total, tiles)
        if need_predict:
            band_indexes = bands(source) if callable(bands) else tuple(bands)
            with scene_context(source) if scene_context is not None else contextlib.nullcontext():
                scene = predict_scene(
                    model,
                    source,
                    outputs.mask,
                    band_indexes=band_indexes,
                    stats=stats,
                    class_table=class_table,
                    tile=options.tile,
                    overlap=options.overlap,
                    batch_size=options.batch_size,
                    device=options.device,
                    autocast_dtype=options.autocast_dtype,
                    progress=progress.tiles_done,
                    multiple_of=options.multiple_of,
                    run_id=run_id,
                    **{f"{o.name}_path": getattr(outputs, o.name) for o in switched_outputs()},
                )
        if need_vector and (scene is None or scene.crs is not None):
            assert outputs.vector is not None and vectors.fmt is not None
            vector = vectorize_mask(
                outputs.mask,
                outputs.vector,
                class_table=class_table,
                fmt=vectors.fmt,
                min_area_m2=vectors.min_area_m2,
                simplify_m=vectors.simplify_m,
            )
    except (CegateError, RasterioError, OSError) as exc:
        return FileOutcome(source, "failed", outputs, scene, vector, message=_message(source, exc))
    note = None if need_predict else "mask existed; polygons made from it"
    if vector is None:
        outputs = replace(outputs, vector=None)  # list only what was written (no CRS: no polygons)
    return FileOutcome(source, "done", outputs, scene, vector, message=note)


def _restore_legend(outputs: OutputPaths, class_table: ClassTable, restyle: bool = True) -> None:
    """Write the legend sidecars of a kept mask, and with `restyle` the style of its kept polygons,
    that lack them (made by an older cegate, or deleted)."""
    if not all(p.exists() for p in outputs.legend()):
        write_legend(outputs.mask, class_table)
    if restyle and outputs.vector is not None and outputs.vector.exists() and not all(p.exists() for p in outputs.vector_style()):
        write_polygon_style(outputs.vector, class_table)


def _has_crs(mask: Path) -> bool:
    """Whether an existing mask is georeferenced (unreadable: True, so vectorising reports why)."""
    try:
        with open_raster(mask) as dataset:
            return dataset.crs is not None
    except CegateError:
        return True


def check_out_dir(out_dir: Path, flag: str = "-o") -> None:
    """Refuse an output folder that is a file (or lies under one) before any scene is mapped.

    Otherwise every scene failed alone with a raw "[Errno 17] File exists" once its mask was
    about to be written, after the model had run.
    """
    out_dir = Path(out_dir)
    existing = out_dir
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if os.path.lexists(existing) and not existing.is_dir():
        where = "is a file" if existing == out_dir else f"lies under {existing}, which is a file"
        raise InputError(f"{flag} {out_dir}: {where}, not a folder; give a folder for the outputs (it is created if missing)")


def check_unique_stems(sources: Sequence[Path]) -> None:
    """Refuse inputs whose outputs would collide (same stem from two folders)."""
    seen: dict[str, Path] = {}
    for source in sources:
        stem = scene_name(source)
        other = seen.setdefault(stem, source)
        if other != source:
            raise InputError(f"{other} and {source} would both write {stem}.mask.tif; predict them into different output folders or rename one")


def _message(source: Path, exc: BaseException) -> str:
    text = os_error_words(exc) or str(exc) or type(exc).__name__
    return text if str(source) in text or source.name in text else f"{source}: {text}"
