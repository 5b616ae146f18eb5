"""What `adapt` records about a finished (or stopped) training in run.json, and its weights.

Split from adapt.py, which decides what to train; this module only writes down what happened:
selections, parameter counts, metrics, timing, and, for a completed run, the adapter files.
"""

from __future__ import annotations

import time
from pathlib import Path

from cegate_cli import distributed
from cegate_cli.model import SegmentationModel
from cegate_cli.run import ADAPTER_BEST, ADAPTER_LAST, RunManifest, parameter_summary, save_weights, write_manifest
from cegate_cli.toolbox import Toolbox
from cegate_cli.train.selftrain import SelfTrainer
from cegate_cli.train.supervised import SupervisedTrainer, TrainOutcome


def record_outcome(
    run_dir: Path,
    manifest: RunManifest,
    trainer: SupervisedTrainer,
    outcome: TrainOutcome,
    model: SegmentationModel,
    toolbox: Toolbox,
    candidates: list,
    started: float,
    device: str,
) -> None:
    """Record what happened in run.json; write the weights when the run completed."""
    manifest.selections = outcome.selections
    manifest.ever_selected = outcome.ever_selected
    manifest.best_selection = outcome.best_selection
    manifest.parameters = parameter_summary(model, toolbox, candidates, outcome.ever_selected, outcome.final_selection)
    manifest.metrics = {
        "best_val_miou": outcome.best_miou,
        "best_step": outcome.best_step,
        "last_val_miou": outcome.val_history[-1][1] if outcome.val_history else None,
        "val_history": outcome.val_history,
        "final_loss": outcome.loss_history[-1][1] if outcome.loss_history else None,
        "loss_history": outcome.loss_history[:: max(1, len(outcome.loss_history) // 200)],
    }
    if isinstance(trainer, SelfTrainer):
        manifest.metrics["validation"] = "source images" if outcome.val_history else None
        manifest.adaptation["pseudo_labels"] = list(trainer.pseudo_history)
        manifest.adaptation["teacher_bytes"] = trainer.teacher.nbytes()
    manifest.timing = {
        "fisher_seconds": round(outcome.fisher_seconds, 3),
        "train_seconds": round(outcome.train_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "device": device,
        "processes": distributed.world().size,
    }
    if outcome.completed:
        distributed.on_main(save_weights, run_dir / ADAPTER_LAST, outcome.last_weights, manifest.run_id)
        distributed.on_main(save_weights, run_dir / ADAPTER_BEST, outcome.best_weights, manifest.run_id)
        manifest.status = "complete"
    distributed.on_main(write_manifest, run_dir, manifest)
