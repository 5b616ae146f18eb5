"""Gated self-training on an unlabeled target folder, resumable step for step.

Two modes share one loop (the supervised trainer's: selection, optimizer, resume state):

- "source+target" (DACS): every step the EMA teacher labels a target batch; half the classes of
  each source crop are pasted onto a target crop (ClassMix); the student learns the mixed crops
  (source labels where pasted, confident pseudo-labels elsewhere) in a strong view, next to the
  plain source cross-entropy. The loss averages over all valid pixels, so the target part is
  weighted by the crop's share of confident pixels, as in DACS. Unlike DACS, unconfident target
  pixels get no pseudo-label at all: on the demo scenes they are the class boundaries, where the
  teacher is wrong (docs/adaptation.md; 3 seeds, gain over source-only training: +0.005 target
  mIoU without them, +0.0025 with them at DACS's weight).
- "target" (continuing an earlier run, no labels at all): the teacher labels a weak view of a
  target batch; the student learns the confident pixels from a strong view of the same crops.

Fisher scores use the teacher's confident pseudo-labels on target crops (and, with a source,
labeled source crops too, so the step-0 selection works while the teacher is still untrained).
Every random choice comes from (seed, step), and the teacher is part of the resume state, so
a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cegate_cli.errors import InputError, RunFolderError
from cegate_cli.module_key import ModuleKey, in_order
from cegate_cli.train.classmix import classmix_masks, mix
from cegate_cli.train.config import SelfTrainConfig
from cegate_cli.train.gating import apply_selection
from cegate_cli.train.losses import masked_cross_entropy
from cegate_cli.train.pseudo import PseudoLabels, prior_distance, pseudo_label, pseudo_label_stats
from cegate_cli.train.reporter import TrainReporter
from cegate_cli.train.strong_view import StrongAugment
from cegate_cli.train.supervised import FISHER_SEED_OFFSET, SupervisedTrainer, TrainInputs
from cegate_cli.train.state import plain
from cegate_cli.train.teacher import EMATeacher

TARGET_SEED_OFFSET = 7_919  # target crops: their own stream, so they never repeat the source's draws
MIX_STREAM = 2  # numpy stream index for ClassMix and the strong view (crops use 0, augmentation 1)


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

    @property
    def mode(self) -> str:
        return "source+target" if self.source is not None else "target"


class SelfTrainer(SupervisedTrainer):
    def __init__(self, inputs: TrainInputs, target: TargetInputs, state_dir: Path | None, reporter: TrainReporter | None = None) -> None:
        super().__init__(inputs, state_dir, reporter)
        self.target = target
        self.self_config = target.config.for_steps(inputs.config.steps)
        # A teacher that starts as an untrained head needs the DACS warm-up; one continuing a
        # trained run is already the better model and averages at full strength from step 0.
        self.teacher = EMATeacher(self.model, target.config.ema, warmup=target.mode == "source+target")
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
        return self._order(set(self.candidates) | set(self.target.kept))

    def active_set(self, chosen: list[ModuleKey]) -> list[ModuleKey]:
        return self._order(set(chosen) | set(self.target.kept))

    def before_first_selection(self) -> None:
        apply_selection(self.toolbox, self.target.kept)  # the model as handed over: the earlier run, or no modules
        self.teacher.sync()

    def on_selection(self) -> None:
        self.teacher.sync()

    def _teacher_labels(self, images: torch.Tensor, valid: torch.Tensor) -> PseudoLabels:
        with self._autocast():
            logits = self.teacher(images)
        prior = self.target.prior if self.self_config.prior_alignment else None
        return pseudo_label(logits, valid, self.self_config.confidence, self.ignore, self.self_config.class_balance, prior)

    def fisher_pairs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        config, device = self.config, self.inputs.device
        count = config.fisher_samples
        from_source = (count + 1) // 2 if self.target.source is not None else 0
        images, labels = [], []
        if from_source:
            batch = self.target.source.sample(step, from_source, config.seed + FISHER_SEED_OFFSET, self.inputs.rank)
            images.append(batch.images.to(device))
            labels.append(batch.masks.to(device))
        if count - from_source > 0:
            batch = self.target.target.sample(step, count - from_source, config.seed + FISHER_SEED_OFFSET + TARGET_SEED_OFFSET, self.inputs.rank)
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
        config, device = self.config, self.inputs.device
        target = self.target.target.sample(step, config.batch_size, config.seed + TARGET_SEED_OFFSET, self.inputs.rank)
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
        with self._autocast():
            logits = self.forward_model(torch.cat((source_images, images)))  # one pass: GroupNorm heads keep samples independent
        batch = source_images.shape[0]
        source_loss = self.task_loss(logits[:batch], source_labels)
        return source_loss + masked_cross_entropy(logits[batch:], labels, self.ignore, pixel_weight=weight, class_weight=self.inputs.class_weights)

    def after_optimizer_step(self, step: int) -> None:
        self.teacher.update(step)

    def _record(self, step: int, pseudo: PseudoLabels) -> None:
        every = self.self_config.stats_every
        assert every is not None  # filled in by for_steps() in __init__
        if step % every == 0 or step == self.config.steps - 1:
            stats = pseudo_label_stats(step, pseudo, self.num_classes)
            prior = self.target.prior
            if prior is not None:
                stats["prior_distance"] = round(prior_distance(stats["class_share"], prior), 4)
                if stats["prior_distance"] > self.self_config.drift_warning and not self._warned_drift:
                    self._warned_drift = True
                    shares = ", ".join(f"{c}: {s:.0%} (source {float(p):.0%})" for c, (s, p) in enumerate(zip(stats["class_share"], prior.tolist())))
                    self.reporter.message(
                        f"warning: at step {step} the pseudo-labels' class shares are far from the source's ({shares}); "
                        "self-training may be collapsing onto a few classes. Check the map, or rerun with --prior-alignment"
                    )
            self.pseudo_history.append(stats)

    # -- resume state --------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            "self_training": {"mode": self.target.mode, "config": self.self_config.to_dict(), "kept": [list(k) for k in self.target.kept]},
            "teacher": self.teacher.state_dict(),
            "pseudo_history": list(self.pseudo_history),
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
