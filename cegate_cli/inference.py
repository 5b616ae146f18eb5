"""`predict` and `evaluate` with a run folder: load the run once, then map or score many scenes.

The model is rebuilt from run.json, LoRA is merged into the attention weights (one matmul per
layer instead of three), and each scene's bands are matched to the run's band choice by name,
so a scene whose bands are stored in another order still works and one without them fails
alone with a clear message.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cegate_cli.bands import match_bands
from cegate_cli.data.folder import discover_labeled
from cegate_cli.loaded_run import LoadedRun, load_run
from cegate_cli.metrics import ConfusionMatrix, evaluate_scene
from cegate_cli.run import read_manifest
from cegate_cli.predict import BatchProgress, BatchSummary, PredictOptions, VectorOptions, expand_inputs, predict_many


@dataclass(frozen=True)
class MapOptions:
    tile: int = 512
    overlap: int = 64
    batch_size: int = 4
    device: str = "auto"
    confidence: bool = False
    weights: str = "best"
    offline: bool | None = None
    token: str | None = None


def load_for_inference(run_dir: Path, options: MapOptions) -> LoadedRun:
    loaded = load_run(run_dir, device=options.device, weights=options.weights, offline=options.offline, token=options.token)
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
        confidence=options.confidence,
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
    if loaded is None:
        read_manifest(run_dir)  # a wrong run folder is named before the inputs are searched
    sources = expand_inputs(inputs)
    loaded = loaded or load_for_inference(run_dir, options)
    manifest = loaded.manifest
    return predict_many(
        loaded.model,
        sources,
        Path(out_dir),
        bands=lambda path: match_bands(manifest.bands, path),
        stats=manifest.normalization,
        class_table=manifest.classes,
        options=_predict_options(loaded, options),
        vectors=vectors,
        overwrite=overwrite,
        progress=progress,
    )


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
    """Predict every labeled image exactly as `predict` would and compare with its mask."""
    loaded = load_for_inference(run_dir, options)
    table = loaded.manifest.classes
    folder = discover_labeled(Path(labeled_dir), ignore_index=table.ignore_index)
    evaluation = Evaluation(ConfusionMatrix(table.num_classes, table.ignore_index))
    with tempfile.TemporaryDirectory(prefix="cegate-eval-") as scratch:
        out_dir = keep_masks if keep_masks is not None else Path(scratch)
        summary = predict_run(
            run_dir,
            [pair.image for pair in folder.pairs],
            out_dir,
            options=options,
            vectors=VectorOptions(fmt=None),
            overwrite=True,
            progress=progress,
            loaded=loaded,
        )
        masks = {pair.image: pair.mask for pair in folder.pairs}
        for outcome in summary.outcomes:
            if outcome.status != "done":
                evaluation.failed.append(f"{outcome.source}: {outcome.message}")
                continue
            single = ConfusionMatrix(table.num_classes, table.ignore_index)
            evaluate_scene(outcome.outputs.mask, masks[outcome.source], num_classes=table.num_classes, ignore_index=table.ignore_index, matrix=single)
            evaluation.matrix.merge(single)
            evaluation.per_file.append({"image": str(outcome.source), "miou": _none_if_nan(single.miou()), "accuracy": _none_if_nan(single.overall_accuracy())})
    return evaluation, loaded


def _none_if_nan(value: float) -> float | None:
    return None if value != value else float(value)
