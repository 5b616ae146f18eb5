"""The results of `adapt`, `predict` and `demo` as JSON-ready dicts: what `--json` prints.

One owner for these shapes, so a script reading `cegate adapt --json` and one reading the demo's
`run` section see the same fields. Durations are in seconds; paths are strings as given (the run
folder and outputs as the library wrote them); NaN becomes null.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cegate_cli.data.classes import ClassTable
    from cegate_cli.pipelines.adapt import AdaptResult
    from cegate_cli.pipelines.demo import DemoResult
    from cegate_cli.predict.batch import BatchSummary, FileOutcome

RUN_METRICS = ("best_val_miou", "best_step", "last_val_miou", "final_loss")


def _number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _modules(keys: Any) -> list[dict[str, Any]]:
    return [{"kind": kind, "layer": int(layer)} for kind, layer in keys]


def adapt_result(result: AdaptResult) -> dict[str, Any]:
    """A finished (or stopped) `adapt`: where the run is, what it chose, how well and how long."""
    from cegate_cli.run import ADAPTER_BEST, ADAPTER_LAST, CONFIG_YAML, RUN_JSON

    manifest = result.manifest
    run_dir = Path(result.run_dir)
    history = manifest.adaptation.pseudo_labels if manifest.adaptation is not None else ()
    metrics = manifest.metrics.to_dict() if manifest.metrics is not None else {}
    files = {"record": RUN_JSON, "weights": ADAPTER_BEST, "weights_last": ADAPTER_LAST, "config": CONFIG_YAML}
    return {
        "run_dir": str(run_dir),
        "run_id": manifest.run_id,
        "status": manifest.status,
        "mode": manifest.mode,
        "backbone": manifest.backbone.source.spec,
        "selected": _modules(manifest.final_selection),
        "ever_selected": _modules(manifest.ever_selected),
        "trainable_share": _number(manifest.parameters.trainable_share if manifest.parameters is not None else None),
        "parameters": manifest.parameters.to_dict() if manifest.parameters is not None else {},
        "metrics": {
            **{name: _number(metrics.get(name)) for name in RUN_METRICS},
            "saved_val_miou": _number(manifest.metrics.saved_val_miou if manifest.metrics is not None else None),
            "calibration": metrics.get("calibration"),
        },
        "pseudo_labels": history[-1] if history else None,
        "timing": manifest.timing.to_dict() if manifest.timing is not None else {},
        "warnings": list(result.warnings),
        "notes": list(result.notes),
        "files": {key: str(run_dir / name) for key, name in files.items() if (run_dir / name).exists()},
    }


def scene_result(outcome: FileOutcome, class_table: ClassTable | None = None) -> dict[str, Any]:
    """One scene of a batch: its status, outputs and, when it was mapped, size, time and classes."""
    entry: dict[str, Any] = {
        "source": str(outcome.source),
        "status": outcome.status,
        "outputs": [str(path) for path in outcome.outputs.all()],
        "message": outcome.message,
    }
    scene = outcome.scene
    if scene is not None:
        entry.update(
            width=scene.width,
            height=scene.height,
            crs=scene.crs,
            tiles=scene.tiles,
            seconds=round(scene.seconds, 3),
            nodata_pixels=scene.nodata_pixels,
            class_pixels=[
                {"id": int(cid), "name": class_table.name_of(cid) if class_table is not None else f"class_{cid}", "pixels": int(n)}
                for cid, n in sorted(scene.class_counts.items())
            ],
            warnings=list(scene.warnings),
            notes=list(scene.notes),
        )
    if outcome.vectors is not None:
        entry["polygons"] = outcome.vectors.features
    return entry


def batch_result(summary: BatchSummary, class_table: ClassTable | None = None, seconds: float | None = None) -> dict[str, Any]:
    """A `predict` over many scenes: counts, the whole batch's wall time, every scene, and the
    merged polygon layer when one was asked for (`--vector-merge`)."""
    result: dict[str, Any] = {
        "done": len(summary.done),
        "skipped": len(summary.skipped),
        "failed": len(summary.failed),
        "seconds": None if seconds is None else round(seconds, 3),
        "scenes": [scene_result(outcome, class_table) for outcome in summary.outcomes],
    }
    merged = summary.merged
    if merged is not None:
        layer = merged.layer
        result["merged"] = {
            "path": str(merged.path),
            "status": merged.status,
            "message": merged.message,
            "scenes": layer.scenes if layer is not None else None,
            "polygons": layer.features if layer is not None else None,
            "crs": layer.crs if layer is not None else None,
            "reprojected": list(layer.reprojected) if layer is not None else [],
        }
    return result


def demo_result(result: DemoResult) -> dict[str, Any]:
    """The demo: its data folders, the run, the maps, the score on the held-out target labels."""
    data = result.data
    classes = result.adapted.manifest.classes
    return {
        "data": {"source": str(data.source_dir), "target": str(data.target_dir), "target_labels": str(data.target_labels_dir)},
        "run": adapt_result(result.adapted),
        "predictions": {"folder": str(result.predictions_dir), **batch_result(result.predictions, classes, result.seconds.get("predict"))},
        "evaluation": result.evaluation.to_dict(classes),
        "seconds": result.seconds,
    }
