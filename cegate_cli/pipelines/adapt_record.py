"""The step both pipelines of `adapt` end with: take the run folder, fit, record what happened.

adapt.py decides what to train (labeled source, or `--from` an earlier run) and hands over a
`Fitting`; from there one path takes the folder (lock; with --overwrite, the old run set aside),
writes run.json and config.yaml, trains, turns Ctrl-C into the message that says how to go on,
and records selections, parameter counts, metrics, timing and, for a completed run, the adapter
files in run.json. Both modes therefore resume, fail and record alike.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cegate_cli.data.crops import CropSampler
from cegate_cli.errors import TrainingInterrupted
from cegate_cli.infra import distributed
from cegate_cli.run import (
    ADAPTER_BEST,
    ADAPTER_LAST,
    REPLACED_DIR,
    RUN_JSON,
    MetricsRecord,
    RunManifest,
    TimingRecord,
    parameter_summary,
    prepare_run_dir,
    read_manifest,
    release_run_dir,
    save_weights,
    settle_replaced_run,
    write_manifest,
    write_run_config,
)
from cegate_cli.run.folder import replaced_run_note
from cegate_cli.toolbox.module_key import ModuleKey
from cegate_cli.train.selftrain import SelfTrainer
from cegate_cli.train.supervised import SupervisedTrainer, TrainOutcome


@dataclass
class Fitting:
    """A run ready to train, as either pipeline of `adapt` leaves it."""

    trainer: SupervisedTrainer
    manifest: RunManifest
    """Written when the run starts, completed by `record_outcome` when it ends."""
    candidates: list[ModuleKey]
    """The modules selection may choose from (run.json counts their parameters)."""
    warnings: list[str]
    samplers: list[CropSampler]
    """Closed once training ends, however it ends."""
    notes: list[str] = field(default_factory=list)
    """What the run did that is no problem (an alpha-tagged band read as data): not warnings."""


def fit_and_record(
    out: Path,
    fitting: Fitting,
    *,
    overwrite: bool,
    resume: bool,
    saved_config: dict[str, Any] | None,
    stop_after: int | None,
    started: float,
) -> TrainOutcome:
    """Everything checked: take the run folder `out` (lock; with --overwrite, set the old run
    aside), train `fitting`, record the outcome there (see the module docstring). The old run is
    dropped once the new one is complete and put back if it fails; the folder is released and
    the samplers are closed however this ends."""
    with contextlib.ExitStack() as closing:
        for sampler in fitting.samplers:
            closing.callback(sampler.close)
        run_dir = Path(out)
        trainer = fitting.trainer
        note = replaced_run_note(run_dir, overwrite=overwrite, resume=resume) if distributed.is_main() else None
        distributed.on_main(prepare_run_dir, run_dir, overwrite=overwrite, resume=resume)
        if note is not None:
            trainer.reporter.message(note)
        completed = failed = False
        try:
            if not resume:  # a resume keeps the interrupted run's record until it has a newer one
                distributed.on_main(write_manifest, run_dir, fitting.manifest)
                if saved_config is not None:
                    distributed.on_main(write_run_config, run_dir, saved_config)
            try:
                outcome = trainer.fit(resume=resume, stop_after=stop_after)
            except KeyboardInterrupt as exc:
                # Nothing of the new run to resume: the earlier run an --overwrite set aside goes back.
                failed = trainer.saved_step is None and (run_dir / REPLACED_DIR).is_dir()
                if not resume or trainer.saved_step is not None:  # else: a resume stopped before it loaded
                    mark_stopped(run_dir, "interrupted")
                replacing = (run_dir / REPLACED_DIR).is_dir()
                raise TrainingInterrupted(_interrupted_message(trainer, out, replacing=replacing, resumed=resume)) from exc
            record_outcome(run_dir, fitting, outcome, started)
            completed = outcome.completed
            return outcome
        except TrainingInterrupted:
            raise
        except BaseException:
            failed = True
            if not resume or trainer.saved_step is not None:
                mark_stopped(run_dir, "failed")
            raise
        finally:
            try:
                if distributed.is_main():  # rank 0 alone holds the folder; no collective on a failure path
                    settle_replaced_run(run_dir, completed=completed, failed=failed)
            finally:
                release_run_dir(run_dir)  # a no-op on ranks other than 0, which never held it


def _interrupted_message(trainer: SupervisedTrainer, out: Path, *, replacing: bool = False, resumed: bool = False) -> str:
    """Where Ctrl-C stopped training and what the user types next. `replacing`: the run of an
    --overwrite (first started or `resumed`), whose earlier run is set aside until this one
    completes (run/replaced.py)."""
    stopped = f"stopped at step {trainer.progress.step} of {trainer.total_steps}"
    if trainer.saved_step is None:
        if replacing:
            return (
                f"Interrupted: {out}: {stopped}, before the first resume state was written; the earlier run "
                "is back in place; run the same command again to replace it"
            )
        return f"Interrupted: {out}: {stopped}, before the first resume state was written; run the same command with --overwrite to start again"
    if replacing:
        again = "again" if resumed else "with --resume in place of --overwrite"
        return (
            f"Interrupted: {out}: {stopped}; the resume state holds step {trainer.saved_step}: run the same command {again} "
            f"to continue from there; the earlier run stays in {out / REPLACED_DIR} until then "
            f"(`cegate restore {out}` puts it back instead)"
        )
    return f"Interrupted: {out}: {stopped}; the resume state holds step {trainer.saved_step}: run the same command with --resume to continue from there"


def mark_stopped(run_dir: Path, status: str) -> None:
    """Record in run.json that the run stopped ("interrupted", "failed") instead of leaving it at
    "training", which reads as still running. Best effort: on a full disk this write fails too,
    and the error that stopped the run is the one the user needs."""
    if not distributed.is_main() or not (run_dir / RUN_JSON).is_file():
        return
    with contextlib.suppress(Exception):
        manifest = read_manifest(run_dir)
        if manifest.status == "training":
            manifest.status = status
            write_manifest(run_dir, manifest)


def record_outcome(run_dir: Path, fitting: Fitting, outcome: TrainOutcome, started: float) -> None:
    """Record what happened in run.json; write the weights when the run completed."""
    manifest, trainer, inputs = fitting.manifest, fitting.trainer, fitting.trainer.inputs
    manifest.selections = outcome.selections
    manifest.ever_selected = outcome.ever_selected
    manifest.best_selection = outcome.best_selection
    manifest.parameters = parameter_summary(inputs.model, inputs.toolbox, fitting.candidates, outcome.ever_selected, outcome.final_selection)
    self_training = isinstance(trainer, SelfTrainer)
    manifest.metrics = MetricsRecord(
        best_val_miou=outcome.best_miou,
        best_step=outcome.best_step,
        last_val_miou=outcome.val_history[-1][1] if outcome.val_history else None,
        val_history=tuple((int(step), float(miou)) for step, miou in outcome.val_history),
        final_loss=outcome.loss_history[-1][1] if outcome.loss_history else None,
        loss_history=tuple((int(step), float(loss)) for step, loss in outcome.loss_history[:: max(1, len(outcome.loss_history) // 200)]),
        calibration=None if outcome.calibration is None else outcome.calibration.to_dict(),
        validation=("source images" if outcome.val_history else None) if self_training else None,
        self_training=self_training,
    )
    if isinstance(trainer, SelfTrainer) and manifest.adaptation is not None:
        adaptation = replace(
            manifest.adaptation,
            pseudo_labels=tuple(trainer.pseudo_history),
            teacher_bytes=trainer.teacher.nbytes(),
            source_steps=trainer.source_steps or None,
            adapt_steps=trainer.adapt_steps if trainer.source_steps else None,
            normalization_choice=trainer.normalization,
        )
        if trainer.prototypes is not None:
            names = [c.name for c in inputs.class_table.classes]
            record = {"blend": trainer.self_config.prototypes, **trainer.prototypes.to_dict(), "sentence": trainer.prototypes.sentence(names)}
            adaptation = replace(adaptation, prototypes=record)
        if trainer.verdict is not None:
            adaptation = replace(adaptation, guard=trainer.verdict.to_dict(), weights=trainer.verdict.sentence())
            kept_source = trainer.verdict.kept == "source"  # the source-only run's model: read as that run reads
            if kept_source or (trainer.normalization or {}).get("chosen") == "source":
                manifest.normalization = adaptation.source_normalization
        manifest.adaptation = adaptation
    manifest.timing = TimingRecord(
        fisher_seconds=round(outcome.fisher_seconds, 3),
        train_seconds=round(outcome.train_seconds, 3),
        total_seconds=round(time.perf_counter() - started, 3),
        device=str(inputs.device),
        processes=distributed.world().size,
    )
    if outcome.completed:
        distributed.on_main(save_weights, run_dir / ADAPTER_LAST, outcome.last_weights, manifest.run_id)
        distributed.on_main(save_weights, run_dir / ADAPTER_BEST, outcome.best_weights, manifest.run_id)
        manifest.status = "complete"
    distributed.on_main(write_manifest, run_dir, manifest)
