"""Gated self-training on an unlabeled target folder, resumable step for step.

Two modes share one loop (the supervised trainer's: selection, optimizer, resume state):

- "source+target" (DACS): every step the EMA teacher labels a target batch; half the classes of
  each source crop are pasted onto a target crop (ClassMix); the student learns the mixed crops
  (source labels where pasted, confident pseudo-labels elsewhere) in a strong view, next to the
  plain source cross-entropy. The loss averages over all valid pixels, so the target part is
  weighted by the crop's share of confident pixels, as in DACS. Unlike DACS, unconfident target
  pixels get no pseudo-label at all: they are mostly class boundaries, where the teacher is wrong.
  Source-first (the default schedule) runs the source-only run's own steps first and self-trains
  from its model, then lets the guard (train/guard.py) keep whichever of the two models shows no
  sign of harm; joint self-trains from step 0 with an untrained teacher.
- "target" (continuing an earlier run, no labels at all): the teacher labels a weak view of a
  target batch; the student learns the confident pixels from a strong view of the same crops.

Fisher scores use the teacher's confident pseudo-labels on target crops (and, with a source,
labeled source crops too, so the step-0 selection works while the teacher is still untrained).
Every random choice comes from (seed, step), and the teacher is part of the resume state, so
a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cegate_cli.errors import InputError, RunFolderError
from cegate_cli.infra.progress import phase
from cegate_cli.model.decoder import CLASS_BIAS
from cegate_cli.options.train import SelfTrainConfig
from cegate_cli.run.state import plain
from cegate_cli.toolbox.fisher import SOURCE_MODEL, FisherScores, Selection
from cegate_cli.toolbox.module_key import ModuleKey, in_order
from cegate_cli.train.classmix import classmix_masks, mix
from cegate_cli.train.gating import apply_selection
from cegate_cli.train.guard import GuardVerdict, choose_normalization, class_shares, judge
from cegate_cli.train.losses import masked_cross_entropy
from cegate_cli.train.prototypes import (
    CLASS_WEIGHT,
    PROTOTYPE_SEED_OFFSET,
    TILE,
    TILES,
    PrototypeFit,
    classifier_inputs,
    fit_prototypes,
    prototype_tiles,
    with_prototypes,
)
from cegate_cli.train.pseudo import DRIFT_WINDOW, PseudoLabels, pooled_drift, prior_distance, pseudo_label, pseudo_label_stats
from cegate_cli.train.reporter import TrainReporter
from cegate_cli.train.schedule import lr_factor
from cegate_cli.train.strong_view import StrongAugment
from cegate_cli.train.supervised import FISHER_SEED_OFFSET, SupervisedTrainer, TrainInputs, TrainOutcome
from cegate_cli.train.teacher import EMATeacher

TARGET_SEED_OFFSET = 7_919  # target crops: their own stream, so they never repeat the source's draws
MIX_STREAM = 2  # numpy stream index for ClassMix and the strong view (crops use 0, augmentation 1)
GUARD_CROPS = 32  # fixed target crops the guard compares the two models on
GUARD_SEED_OFFSET = 104_729


@dataclass
class TargetInputs:
    target: Any
    """CropSampler over the unlabeled target images (weak view: flips and rotations only)."""
    source: Any | None
    """CropSampler over labeled source pairs (source+target mode), or None (target mode)."""
    config: SelfTrainConfig
    kept: tuple[ModuleKey, ...] = ()
    """Modules of the run being continued: they stay in the model and keep training, because
    dropping them would throw away what the source taught; Fisher adds the target's choice."""
    prior: torch.Tensor | None = None
    """(K,) class shares of the source labels: what pseudo-labels are compared (and, with
    `prior_alignment`, aligned) to; None when unknown."""
    source_view: Any | None = None
    """`--target-norm auto`: the target crops normalised with the source's statistics (`target`
    holds them with the target's); self-training learns from the one the source model is surer on."""

    @property
    def mode(self) -> str:
        return "source+target" if self.source is not None else "target"


class SelfTrainer(SupervisedTrainer):
    def __init__(self, inputs: TrainInputs, target: TargetInputs, state_dir: Path | None, reporter: TrainReporter | None = None) -> None:
        super().__init__(inputs, state_dir, reporter)
        self.target = target
        self.self_config = target.config.for_steps(inputs.config.steps)
        self.source_steps = 0
        """source-first: steps [0, source_steps) are exactly the source-only run; self-training follows."""
        if target.mode == "source+target" and self.self_config.schedule == "source-first":
            self.source_steps = inputs.config.steps
        self.adapt_steps = int(self.self_config.adapt_steps or 0) if self.source_steps else inputs.config.steps
        # A teacher that starts as an untrained head needs the DACS warm-up; one continuing a
        # trained model (an earlier run, or the source phase) averages at full strength at once.
        self.teacher = EMATeacher(self.model, target.config.ema, warmup=target.mode == "source+target" and not self.source_steps)
        self.verdict: GuardVerdict | None = None
        self.prototypes: PrototypeFit | None = None
        """The head's blend with the target's class centroids, when the run made one."""
        self.normalization: dict[str, Any] | None = None
        """--target-norm auto: which statistics self-training read the target with, and why."""
        self._start_shares: list[float] | None = None
        c = target.config
        self.strong = StrongAugment(
            geometry=target.mode == "target", gain=c.strong_gain, offset=c.strong_offset, noise=c.strong_noise, blur_probability=c.strong_blur
        )
        self.pseudo_history: list[dict[str, Any]] = []
        self._warned_drift = False
        self.ignore = inputs.class_table.ignore_index
        self.num_classes = inputs.class_table.num_classes

    # -- selection -----------------------------------------------------------------------------
    def _order(self, keys: set[ModuleKey]) -> list[ModuleKey]:
        return in_order(keys)

    def fisher_keys(self) -> list[ModuleKey]:
        """The modules the rule may pick, and the kept modules of the earlier run: those stay
        switched on in the model, so they are scored with the rest (and count in each kind's
        normalisation), though picking stays among the rule's own modules."""
        return self._order(set(self.pickable()) | set(self.target.kept))

    def active_set(self, chosen: list[ModuleKey]) -> list[ModuleKey]:
        return self._order(set(chosen) | set(self.target.kept))

    def before_first_selection(self) -> None:
        apply_selection(self.toolbox, self.target.kept)  # the model as handed over: the earlier run, or no modules
        self.teacher.sync()

    def on_selection(self) -> None:
        self.teacher.sync()

    # -- the two phases of source-first --------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.source_steps + self.adapt_steps

    def adapting(self, step: int) -> bool:
        """Whether step `step` self-trains (every step but the source phase's)."""
        return step >= self.source_steps

    def validates_at(self, step: int) -> bool:
        return super().validates_at(step) or step == self.total_steps

    def keeps_best(self, step: int) -> bool:
        """The source phase keeps its best step, as the source-only run does; nothing after it can
        be judged on source images."""
        return bool(self.source_steps) and step <= self.source_steps

    def lr_factor_at(self, step: int) -> float:
        if not self.source_steps:
            return super().lr_factor_at(step)
        if step < self.source_steps:
            return super().lr_factor_at(step)  # exactly the source-only run's schedule
        warmup = min(self.config.warmup_steps or 0, self.adapt_steps // 10)
        return lr_factor(step - self.source_steps, self.adapt_steps, warmup, self.config.poly_power)

    def before_step(self, step: int) -> None:
        """At the end of the source phase: continue from its best (calibrated) weights, with a
        teacher that starts as that model and a fresh optimizer."""
        if not self.source_steps or step != self.source_steps:
            return
        if not self.progress.best_weights:  # no validation in the source phase: its last step is the source model
            self.progress.best_weights = self.trained_weights()
            self.progress.best_step = step
            self.progress.best_selection = list(self.toolbox.active_keys)
        self._load(self.source_model())
        best = list(self.progress.best_selection)
        if best and best != list(self.toolbox.active_keys):  # reselected after the best step: back to its modules
            self._install(Selection(step=step, selected=best, scores=FisherScores({}, {}, 0), rule=SOURCE_MODEL))
        self.optimizer = None
        self._rebuild_optimizer()
        self.teacher.restart()
        if self.target.source_view is not None and self.normalization is None:
            self.normalization = self._choose_normalization()

    @property
    def target_crops(self) -> Any:
        """The target sampler self-training reads: in the units `--target-norm` chose."""
        if self.normalization is not None and self.normalization["chosen"] == "source":
            return self.target.source_view
        return self.target.target

    def _fixed_target_batches(self, sampler: Any) -> list[Any]:
        windows = sampler.fixed_windows(GUARD_CROPS, self.config.seed + GUARD_SEED_OFFSET)
        return [sampler.read(windows[i : i + self.config.batch_size]) for i in range(0, len(windows), self.config.batch_size)]

    @torch.no_grad()
    def _predict(self, batches: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's classes and top probabilities on fixed crops."""
        self.model.eval()
        classes, confidence = [], []
        for batch in batches:
            with self._autocast():
                probabilities = torch.softmax(self.model(batch.images.to(self.inputs.device)).float(), dim=1).cpu()
            top = probabilities.max(dim=1)
            classes.append(top.indices)
            confidence.append(top.values)
        return torch.cat(classes), torch.cat(confidence)

    def _choose_normalization(self) -> dict[str, Any]:
        """The statistics the source model is clearly surer under on the target's pixels (see
        guard.choose_normalization): a sensor's gains and offsets make it unsure under the source's."""
        mean = {}
        for name, sampler in (("target", self.target.target), ("source", self.target.source_view)):
            batches = self._fixed_target_batches(sampler)
            valid = torch.cat([b.valid for b in batches]).bool()
            _, confidence = self._predict(batches)
            mean[name] = round(float(confidence[valid].mean()) if bool(valid.any()) else 0.0, 4)
        chosen = choose_normalization(mean["source"], mean["target"])
        self.reporter.message(
            f"adaptation: target read with the {chosen}'s band statistics (the source model's mean confidence on target "
            f"pixels: {mean['source']:.3f} with the source's, {mean['target']:.3f} with the target's)"
        )
        return {"chosen": chosen, "mean_confidence": mean}

    def source_model(self) -> dict[str, torch.Tensor]:
        """What the source phase would have saved: its best weights with the calibration applied."""
        from cegate_cli.run.weights import with_class_offsets

        best = self.progress.best_weights or self.trained_weights()
        calibration = self.progress.best_calibration
        return with_class_offsets(best, calibration.offsets) if calibration is not None and calibration.changed else best

    def _load(self, tensors: dict[str, torch.Tensor]) -> None:
        from cegate_cli.run.weights import apply_run_tensors

        apply_run_tensors(self.model, self.toolbox, {k: v.to(self.inputs.device) for k, v in tensors.items()})

    def fit(self, resume: bool = False, stop_after: int | None = None) -> TrainOutcome:
        outcome = super().fit(resume=resume, stop_after=stop_after)
        if not outcome.completed:
            return outcome
        if self.source_steps:
            verdict = self._judge(outcome)
            if not self.self_config.guard:
                verdict = replace(verdict, kept="adapted")
            self.verdict = verdict
            self.reporter.message(f"adaptation: {verdict.sentence()}")
            if verdict.kept == "adapted":
                outcome = self._keep_adapted(outcome)
        if self.self_config.prototypes > 0:
            outcome = self._fit_prototypes(outcome)
        return outcome

    def _keep_adapted(self, outcome: TrainOutcome) -> TrainOutcome:
        """The adapted (last) weights become the saved ones, and the metrics say so: their step and
        source validation, and no calibration (that was fitted for the source model they started from)."""
        last_miou = outcome.val_history[-1][1] if outcome.val_history and outcome.val_history[-1][0] == outcome.step else None
        return replace(
            outcome,
            best_weights=outcome.last_weights,
            best_selection=list(self.toolbox.active_keys),
            best_step=outcome.step,
            best_miou=last_miou,
            calibration=None,
        )

    @torch.no_grad()
    def _fit_prototypes(self, outcome: TrainOutcome) -> TrainOutcome:
        """The kept model with its classifier blended with the target's class centroids, found on
        fixed target tiles read in the units predict will read the target with."""
        from cegate_cli.run.weights import DECODER_PREFIX

        kept_source = self.verdict is not None and self.verdict.kept == "source"
        read_as_source = self.source_steps and (kept_source or (self.normalization or {}).get("chosen") == "source")
        stats = self.target.source.stats if read_as_source and self.target.source is not None else self.target.target.stats
        tensors = outcome.best_weights
        seed = self.config.seed + PROTOTYPE_SEED_OFFSET
        self._load(tensors)
        apply_selection(self.toolbox, outcome.best_selection)
        self.model.eval()
        device = self.inputs.device

        def run(images: torch.Tensor) -> torch.Tensor:
            with self._autocast():
                return self.model(images.to(device))

        with phase(self.reporter, f"class centroids of the target (up to {TILES} tiles of {TILE} px)"):
            features, scores = classifier_inputs(
                self.model, prototype_tiles(self.target.target.images, self.target.target.band_indexes, stats, self.ignore, seed), run, seed
            )
        fit = fit_prototypes(
            tensors[f"{DECODER_PREFIX}{CLASS_WEIGHT}"], tensors[f"{DECODER_PREFIX}{CLASS_BIAS}"], features, scores, self.self_config.prototypes
        )
        self.prototypes = fit
        self.reporter.message(f"adaptation: {fit.sentence([c.name for c in self.inputs.class_table.classes])}")
        return replace(outcome, best_weights=with_prototypes(tensors, fit, DECODER_PREFIX))

    @torch.no_grad()
    def _judge(self, outcome: TrainOutcome) -> GuardVerdict:
        """The source model (outcome.best_weights) against the adapted one (last_weights) on fixed
        target crops in the units self-training read them in (the teacher's view when it began),
        and on the source's validation images."""
        batches = self._fixed_target_batches(self.target_crops)
        valid = torch.cat([batch.valid for batch in batches]).bool()
        final = list(self.toolbox.active_keys)
        predictions = {}
        for which, tensors, keys in (("source", outcome.best_weights, outcome.best_selection), ("adapted", outcome.last_weights, final)):
            self._load(tensors)
            apply_selection(self.toolbox, keys)
            predictions[which], _ = self._predict(batches)
        self._load(outcome.last_weights)  # the model ends as training left it
        k = self.num_classes
        agree = float((predictions["source"] == predictions["adapted"])[valid].float().mean()) if bool(valid.any()) else 1.0
        adapted_val = next((miou for step, miou in reversed(outcome.val_history) if step > self.source_steps), None)
        names = [c.name for c in self.inputs.class_table.classes]
        return judge(
            class_shares(predictions["source"], valid, k), class_shares(predictions["adapted"], valid, k), agree, outcome.best_miou, adapted_val, names
        )

    def _teacher_labels(self, images: torch.Tensor, valid: torch.Tensor) -> PseudoLabels:
        with self._autocast():
            logits = self.teacher(images)
        prior = self.target.prior if self.self_config.prior_alignment else None
        return pseudo_label(logits, valid, self.self_config.confidence, self.ignore, self.self_config.class_balance, prior)

    def fisher_pairs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.adapting(step):
            return super().fisher_pairs(step)  # the source phase scores as the source-only run does
        config, device = self.config, self.inputs.device
        count = config.fisher_samples
        from_source = (count + 1) // 2 if self.target.source is not None else 0
        images, labels = [], []
        if from_source:
            batch = self.target.source.sample(step, from_source, config.seed + FISHER_SEED_OFFSET, self.inputs.rank)
            images.append(batch.images.to(device))
            labels.append(batch.masks.to(device))
        if count - from_source > 0:
            batch = self.target_crops.sample(step, count - from_source, config.seed + FISHER_SEED_OFFSET + TARGET_SEED_OFFSET, self.inputs.rank)
            target_images = batch.images.to(device)
            pseudo = self._teacher_labels(target_images, batch.valid.to(device))
            if self.target.source is None and not bool(pseudo.confident.any()):
                raise InputError(
                    f"the teacher is confident above {self.self_config.confidence} on no pixel of {count - from_source} "
                    "target crops, so there is nothing to score modules on; lower --confidence (e.g. 0.8), or check that "
                    "--target holds the imagery the earlier run can map"
                )
            images.append(target_images)
            labels.append(pseudo.confident_only(self.ignore))
        return torch.cat(images), torch.cat(labels)

    # -- one step ------------------------------------------------------------------------------
    def compute_loss(self, step: int) -> torch.Tensor:
        if not self.adapting(step):
            return super().compute_loss(step)
        config, device = self.config, self.inputs.device
        target = self.target_crops.sample(step, config.batch_size, config.seed + TARGET_SEED_OFFSET, self.inputs.rank)
        target_images, target_valid = target.images.to(device), target.valid.to(device)
        pseudo = self._teacher_labels(target_images, target_valid)
        self._record(step, pseudo)
        rng = np.random.default_rng([config.seed, step, self.inputs.rank, MIX_STREAM])
        if self.target.source is None:
            images, labels, weight, _ = self.strong(target_images, pseudo.labels, pseudo.confident.float(), target_valid, rng)
            with self._autocast():
                logits = self.forward_model(images)
            # Confident pixels count, averaged over all valid pixels (FixMatch): a batch the
            # teacher is unsure about moves the student little.
            return masked_cross_entropy(logits, labels, self.ignore, pixel_weight=weight, class_weight=self.inputs.class_weights)

        source = self.target.source.sample(step, config.batch_size, config.seed, self.inputs.rank)
        source_images, source_labels = source.images.to(device), source.masks.to(device)
        if self.self_config.classmix:
            paste = classmix_masks(source_labels, self.ignore, rng)
        else:
            paste = torch.zeros_like(target_valid)
        mixed = mix(source_images, source_labels, target_images, pseudo.labels, pseudo.confident.float(), target_valid, paste)
        images, labels, weight, _ = self.strong(mixed.images, mixed.labels, mixed.pixel_weight, mixed.valid, rng)
        if not self.self_config.source_batch:  # the pasted source pixels are the source's only say
            with self._autocast():
                logits = self.forward_model(images)
            return masked_cross_entropy(logits, labels, self.ignore, pixel_weight=weight, class_weight=self.inputs.class_weights)
        with self._autocast():
            logits = self.forward_model(torch.cat((source_images, images)))  # one pass: GroupNorm heads keep samples independent
        batch = source_images.shape[0]
        source_loss = self.task_loss(logits[:batch], source_labels)
        return source_loss + masked_cross_entropy(logits[batch:], labels, self.ignore, pixel_weight=weight, class_weight=self.inputs.class_weights)

    def after_optimizer_step(self, step: int) -> None:
        if self.adapting(step):
            self.teacher.update(step - self.source_steps)

    def _record(self, step: int, pseudo: PseudoLabels) -> None:
        every = self.self_config.stats_every
        assert every is not None  # filled in by for_steps() in __init__
        if (step - self.source_steps) % every != 0 and step != self.total_steps - 1:
            return
        stats = pseudo_label_stats(step, pseudo, self.num_classes)
        if self.target.prior is not None:
            stats["prior_distance"] = round(prior_distance(stats["class_share"], self.target.prior), 4)
        self.pseudo_history.append(stats)
        judged = [h for h in self.pseudo_history if h["step"] >= self._teacher_trained_from()]
        drift = pooled_drift([h["class_share"] for h in judged])
        if drift is None:
            return
        stats["drift"] = round(drift, 4)
        if drift > self.self_config.drift_warning and not self._warned_drift:
            self._warned_drift = True
            first, last = judged[:DRIFT_WINDOW], judged[-DRIFT_WINDOW:]
            shares = ", ".join(f"{c.name} {_mean_share(last, i):.0%} (was {_mean_share(first, i):.0%})" for i, c in enumerate(self.inputs.class_table.classes))
            self.reporter.message(
                f"warning: by step {step} the pseudo-labels' class shares (mean of the last {DRIFT_WINDOW} records) moved far from "
                f"the teacher's own from step {first[0]['step']} on ({shares}); self-training may be collapsing onto a few classes"
            )

    def _teacher_trained_from(self) -> int:
        """The first step whose teacher has learnt something: the drift warning compares later
        pseudo-labels with that step's. A joint run's teacher starts untrained (its early labels
        are noise), so it is judged from a quarter of the run on."""
        if self.source_steps or self.target.mode == "target":
            return self.source_steps
        return max(1, self.config.steps // 4)

    # -- resume state --------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            "self_training": {"mode": self.target.mode, "config": self.self_config.to_dict(), "kept": [list(k) for k in self.target.kept]},
            "teacher": self.teacher.state_dict(),
            "pseudo_history": list(self.pseudo_history),
            **({"normalization_choice": self.normalization} if self.normalization is not None else {}),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        saved = state.get("self_training")
        wanted = plain({"mode": self.target.mode, "config": self.self_config.to_dict(), "kept": [list(k) for k in self.target.kept]})
        if saved is None:
            raise RunFolderError(f"{self.state_file}: the interrupted run was not self-training; resume it without --target")
        if saved != wanted:
            changed = sorted(k for k in wanted["config"] if saved["config"].get(k) != wanted["config"][k])
            if saved["mode"] != wanted["mode"] or saved["kept"] != wanted["kept"]:
                changed.insert(0, "mode/--from")
            raise RunFolderError(
                f"{self.state_file}: cannot resume with different self-training settings ({', '.join(changed)}); "
                "use the same options as the interrupted run, or start over with --overwrite"
            )
        try:
            self.teacher.load_state_dict(dict(state["teacher"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RunFolderError(f"{self.state_file}: damaged resume state ({exc}); start over with --overwrite") from exc
        self.pseudo_history = list(state.get("pseudo_history", []))
        choice = state.get("normalization_choice")
        self.normalization = None if choice is None else dict(choice)


def _mean_share(records: list[dict[str, Any]], index: int) -> float:
    return sum(r["class_share"][index] for r in records) / len(records)
