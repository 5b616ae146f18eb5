"""`predict` and `evaluate` with a run folder: load the run once, then map or score many scenes.

The model is rebuilt from run.json, LoRA is merged into the attention weights (one matmul per
layer instead of three), and each scene's bands are matched to the run's band choice by name,
so a scene whose bands are stored in another order still works and one without them fails
alone with a clear message. A backbone that describes the scene it sees (Galileo: pixel size and
month) is fed each scene's own facts, read from its metadata (`scene_conditions`).

Under torchrun each process maps every world-size-th scene, each scene whole on one process (a
scene is the unit a user can check and redo; splitting one across GPUs would need its blended
seams exchanged). The outcomes are then gathered, so every process returns the same summary of
all scenes, in input order, and can exit with the same code. The batch's merged polygon layer
(`--vector-merge`) is written once, by rank 0, from every rank's scene files after that gather.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from cegate_cli.data.bands import match_bands
from cegate_cli.data.folder import discover_labeled
from cegate_cli.data.metrics import ConfusionMatrix, evaluate_scene
from cegate_cli.data.raster import open_raster
from cegate_cli.data.scene_info import read_scene_info
from cegate_cli.errors import Interrupted, MappingInterrupted
from cegate_cli.infra import distributed
from cegate_cli.infra.progress import phase
from cegate_cli.predict import BatchProgress, BatchSummary, PredictOptions, VectorOptions, expand_inputs, predict_many, scene_cost
from cegate_cli.predict.batch import FileOutcome, check_kept_outputs, check_merge_target, check_out_dir, check_unique_stems, merge_batch
from cegate_cli.predict.map_options import MapOptions
from cegate_cli.predict.outputs import switched_outputs
from cegate_cli.predict.tiling import plan_tiles
from cegate_cli.run import LoadedRun, load_run, read_manifest

T = TypeVar("T")


def load_for_inference(run_dir: Path, options: MapOptions) -> LoadedRun:
    device = str(distributed.local_device(options.device))  # under torchrun: this process's own GPU
    loaded = load_run(run_dir, device=device, weights=options.weights, offline=options.offline, token=options.token)
    loaded.toolbox.merge_lora()
    return loaded


def _predict_options(loaded: LoadedRun, options: MapOptions) -> PredictOptions:
    patch = loaded.model.backbone.patch_size
    return PredictOptions(
        tile=options.tile,
        overlap=options.overlap,
        batch_size=options.batch_size,
        multiple_of=patch,
        device=loaded.device,
        autocast_dtype=torch.bfloat16 if loaded.device.type == "cuda" else None,
        **{output.name: output.name in options.outputs for output in switched_outputs()},
    )


def predict_run(
    run_dir: Path,
    inputs: Sequence[str | Path],
    out_dir: Path,
    *,
    options: MapOptions = MapOptions(),
    vectors: VectorOptions = VectorOptions(),
    overwrite: bool = False,
    progress: BatchProgress | None = None,
    loaded: LoadedRun | None = None,
) -> BatchSummary:
    """Map every input scene; under torchrun this process maps its share and returns the summary of all."""
    options.check()
    vectors.check()
    manifest = read_manifest(run_dir) if loaded is None else loaded.manifest  # a wrong run folder is named before the inputs are searched
    check_out_dir(Path(out_dir))
    sources = expand_inputs(inputs)
    check_unique_stems(sources)  # over all scenes: two processes must never write the same file
    switches = {output.name: output.name in options.outputs for output in switched_outputs()}
    check_kept_outputs(sources, Path(out_dir), manifest.run_id, overwrite, switches)
    if vectors.merge:
        check_merge_target(sources, Path(out_dir), vectors, overwrite, switches)
    sizes = scene_cost.survey(sources)  # a scene too large to map is refused before the run loads
    if loaded is None:
        with phase(progress, f"loading the run {run_dir}"), _stopped_before_mapping(out_dir):
            loaded = load_for_inference(run_dir, options)
    share = distributed.shard(sources)
    progress = scene_cost.announce([s for s in sizes if s.source in share], _tile_counter(loaded, options), options.tile, progress)
    local = _map_scenes(loaded, share, Path(out_dir), options, replace(vectors, merge=False), overwrite, progress)
    summary = BatchSummary(_in_input_order(distributed.gather_objects(local.outcomes)))
    if vectors.merge:  # once, from every rank's scenes
        summary.merged = distributed.on_main(merge_batch, summary, Path(out_dir), vectors, loaded.manifest.classes, overwrite, progress)
    distributed.rank_log("summary", done=len(summary.done), skipped=len(summary.skipped), failed=len(summary.failed))
    return summary


def _map_scenes(
    loaded: LoadedRun,
    sources: Sequence[Path],
    out_dir: Path,
    options: MapOptions,
    vectors: VectorOptions,
    overwrite: bool,
    progress: BatchProgress | None,
) -> BatchSummary:
    """This process's scenes (all of them without torchrun)."""
    manifest = loaded.manifest
    summary = predict_many(
        loaded.model,
        sources,
        out_dir,
        bands=lambda path: match_bands(manifest.bands, path),
        stats=manifest.normalization,
        class_table=manifest.classes,
        options=_predict_options(loaded, options),
        vectors=vectors,
        overwrite=overwrite,
        progress=progress,
        scene_context=scene_conditions(loaded.model.backbone),
        run_id=manifest.run_id,
    )
    for outcome in summary.outcomes:
        distributed.rank_log("mapped", source=outcome.source, status=outcome.status, outputs=outcome.outputs.all())
    return summary


def _tile_counter(loaded: LoadedRun, options: MapOptions) -> Callable[[scene_cost.SceneSize], int]:
    """How many tiles predict runs on a scene of a given size (the plan predict_scene follows)."""
    patch = loaded.model.backbone.patch_size
    return lambda size: len(plan_tiles(size.height, size.width, tile=options.tile, overlap=options.overlap, multiple_of=patch))


def scene_conditions(backbone: Any) -> Callable[[Path], AbstractContextManager[object]] | None:
    """For backbones that take a scene's own facts (`BlockBackbone.takes_scene_info`): a context
    per scene that feeds them those of the file being mapped; None for the others."""
    if not getattr(backbone, "takes_scene_info", False):
        return None

    def conditions(path: Path) -> AbstractContextManager[object]:
        with open_raster(path) as dataset:
            scene = read_scene_info(dataset)
        return backbone.scene_conditions(scene)

    return conditions


def _in_input_order(shares: list[list[T]]) -> list[T]:
    """Interleave the ranks' shares back: rank r held inputs r, r + size, r + 2 size, ..."""
    size = len(shares)
    placed = sorted((rank + i * size, outcome) for rank, share in enumerate(shares) for i, outcome in enumerate(share))
    return [outcome for _, outcome in placed]


@dataclass
class Evaluation:
    matrix: ConfusionMatrix
    per_file: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def to_dict(self, loaded_classes: Any) -> dict[str, Any]:
        return {**self.matrix.to_dict(loaded_classes), "files": self.per_file, "failed": self.failed}


def evaluate_run(
    run_dir: Path,
    labeled_dir: Path,
    *,
    options: MapOptions = MapOptions(),
    progress: BatchProgress | None = None,
    keep_masks: Path | None = None,
) -> tuple[Evaluation, LoadedRun]:
    """Predict every labeled image exactly as `predict` would and compare with its mask.

    Under torchrun each process maps and scores its share of the images in its own scratch
    folder (nothing needs a shared disk); the confusion matrices are summed across processes,
    so every process returns the evaluation of all images.
    """
    options.check()
    if keep_masks is not None:
        check_out_dir(Path(keep_masks), "--keep-masks")
    recorded = read_manifest(run_dir)  # the folders are checked before the model loads (seconds)
    folder = discover_labeled(Path(labeled_dir), ignore_index=recorded.classes.ignore_index)
    images = [pair.image for pair in folder.pairs]
    check_unique_stems(images)
    with phase(progress, f"loading the run {run_dir}"), _stopped_before_mapping(Path(labeled_dir), "scored"):
        loaded = load_for_inference(run_dir, options)
    table = loaded.manifest.classes
    masks = {pair.image: pair.mask for pair in folder.pairs}
    with tempfile.TemporaryDirectory(prefix="cegate-eval-") as scratch:
        out_dir = keep_masks if keep_masks is not None else Path(scratch)
        try:
            local = _map_scenes(loaded, distributed.shard(images), out_dir, options, VectorOptions(fmt=None), True, progress)
            scored = [_score(outcome, masks, table.num_classes, table.ignore_index) for outcome in local.outcomes]
        except MappingInterrupted as exc:
            raise _evaluation_interrupted(exc, Path(labeled_dir), keep_masks) from exc
    evaluation = Evaluation(ConfusionMatrix(table.num_classes, table.ignore_index))
    for outcome, matrix, row in _in_input_order(distributed.gather_objects(scored)):
        if matrix is None:
            evaluation.failed.append(outcome.message or str(outcome.source))  # the message names the file
            continue
        evaluation.matrix.merge(matrix)
        evaluation.per_file.append(row)
    return evaluation, loaded


@contextmanager
def _stopped_before_mapping(where: Path, done: str = "written") -> Iterator[None]:
    """Ctrl-C while the run loads: say that nothing was mapped yet."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt as exc:
        raise MappingInterrupted(f"Interrupted: {where}: stopped while loading the run, before any scene was mapped; nothing was {done}") from exc


def _evaluation_interrupted(exc: MappingInterrupted, labeled_dir: Path, keep_masks: Path | None) -> MappingInterrupted:
    """Ctrl-C during evaluate: nothing is scored until every image is mapped, so say what of the
    masks is left and that the scores need a full run."""
    mapped = f"{len(exc.finished)} of {exc.total} images mapped"
    if keep_masks is None:
        masks = "the masks made so far were in a scratch folder and are removed"
    elif exc.finished:
        masks = f"their masks are complete in {keep_masks}, nothing half-written"
    else:
        masks = f"nothing was written to {keep_masks}"
    return MappingInterrupted(
        f"Interrupted: {labeled_dir}: {mapped}, none scored (scores are printed once every image is mapped); {masks}; run the same command again to evaluate",
        exc.finished,
        exc.total,
    )


def _score(
    outcome: FileOutcome, masks: dict[Path, Path], num_classes: int, ignore_index: int
) -> tuple[FileOutcome, ConfusionMatrix | None, dict[str, Any] | None]:
    """One mapped image against its mask: its confusion matrix and per-file row (None if it failed)."""
    if outcome.status != "done":
        return outcome, None, None
    single = ConfusionMatrix(num_classes, ignore_index)
    evaluate_scene(outcome.outputs.mask, masks[outcome.source], num_classes=num_classes, ignore_index=ignore_index, matrix=single)
    row = {"image": str(outcome.source), "miou": _none_if_nan(single.miou()), "accuracy": _none_if_nan(single.overall_accuracy())}
    return outcome, single, row


def _none_if_nan(value: float) -> float | None:
    return None if value != value else float(value)
