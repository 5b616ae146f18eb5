"""Gated supervised training on labeled crops, resumable step for step.

Every batch is a pure function of (seed, step), the model is initialised from the seed, and the
resume state holds every trained tensor and the optimizer's moments, so a run killed and resumed
finishes with the same weights as one that was never interrupted (on the same device). The state
is data only (safetensors + JSON, `cegate_cli.run.state`): resuming never unpickles anything.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cegate_cli.data.classes import ClassTable
from cegate_cli.data.metrics import ConfusionMatrix
from cegate_cli.infra.progress import phase
from cegate_cli.infra.words import counted
from cegate_cli.model.segmentation import SegmentationModel
from cegate_cli.options.train import SELECTIONS, TrainConfig
from cegate_cli.run.state import record_path
from cegate_cli.run.weights import run_tensors, with_class_offsets
from cegate_cli.toolbox.attach import Toolbox
from cegate_cli.toolbox.fisher import (
    FISHER_RULES,
    HEAD_WARMUP,
    FisherScores,
    Selection,
    empirical_fisher,
    modules_to_score,
    score_statistic,
    select_by_fisher_rule,
    within_cost_budget,
)
from cegate_cli.toolbox.module_key import KINDS, ModuleKey, in_order
from cegate_cli.train import resume
from cegate_cli.train.calibrate import Calibration, fit_class_offsets, pixel_stride
from cegate_cli.train.gating import apply_selection
from cegate_cli.train.losses import segmentation_loss
from cegate_cli.train.optimizer import build_adamw, ordered_names
from cegate_cli.train.reporter import SilentReporter, TrainReporter
from cegate_cli.train.schedule import lr_factor

FISHER_SEED_OFFSET = 104_729  # Fisher crops come from their own stream, never the training batches


@dataclass
class TrainInputs:
    model: SegmentationModel
    toolbox: Toolbox
    sampler: Any  # cegate_cli.data.crops.CropSampler: sample(step, batch_size, seed, rank) -> CropBatch
    validation: list[Any]  # fixed CropBatch list
    class_table: ClassTable
    config: TrainConfig
    device: torch.device
    select_count: int
    kinds: tuple[str, ...] = KINDS
    rank: int = 0
    class_weights: torch.Tensor | None = None
    """(K,) per-class loss weights for the "balanced" losses (from the labels' class shares)."""
    keep_best: bool = True
    """Keep the weights of the best validation step. Off when validation cannot measure what the
    run is for (self-training: validation is on the source, the run is for the target)."""
    candidates: list[ModuleKey] | None = None
    """The modules selection may choose from, as `adapt` decided them (its kinds and
    `AdaptOptions.only_modules`); None: every module of `kinds`."""


@dataclass
class TrainOutcome:
    completed: bool
    step: int
    selections: list[Selection]
    ever_selected: list[ModuleKey]
    best_miou: float | None
    best_step: int | None
    val_history: list[tuple[int, float]]
    loss_history: list[tuple[int, float]]
    best_weights: dict[str, torch.Tensor]
    best_selection: list[ModuleKey]
    last_weights: dict[str, torch.Tensor]
    fisher_seconds: float
    train_seconds: float
    calibration: Calibration | None = None
    """The class-score offsets fitted on validation at the best step, already added to
    `best_weights` (None: not calibrated)."""

    @property
    def final_selection(self) -> list[ModuleKey]:
        return self.selections[-1].selected if self.selections else []


@dataclass
class _Progress:
    step: int = 0
    selections: list[Selection] = field(default_factory=list)
    ever_selected: set[ModuleKey] = field(default_factory=set)
    best_miou: float | None = None
    best_step: int | None = None
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    best_selection: list[ModuleKey] = field(default_factory=list)
    best_calibration: Calibration | None = None
    val_history: list[tuple[int, float]] = field(default_factory=list)
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    fisher_seconds: float = 0.0
    train_seconds: float = 0.0


class SupervisedTrainer:
    def __init__(self, inputs: TrainInputs, state_dir: Path | None, reporter: TrainReporter | None = None) -> None:
        self.inputs = inputs
        self.state_dir = state_dir
        """Where the resume state lives (RUN/state), or None to keep none."""
        self.saved_step: int | None = None
        """The step of the newest resume state on disk: what `--resume` continues from."""
        self.reporter = reporter or SilentReporter()
        self.model = inputs.model
        """The model itself, always: Fisher scoring, validation, the teacher and the saved weights read it."""
        self.forward_model: torch.nn.Module = inputs.model
        """What the training forward pass (`compute_loss`) runs through: `model` itself on one process;
        under torchrun its DistributedDataParallel wrapper (train/ddp.py), whose backward pass averages
        the trained tensors' gradients over the processes. Nothing else may go through the wrapper:
        Fisher gradients and validation must stay per process."""
        self.toolbox = inputs.toolbox
        self.config = inputs.config
        self.progress = _Progress()
        self.optimizer: torch.optim.AdamW | None = None
        self.optimizer_names: list[str] = []
        self.candidates = list(inputs.candidates) if inputs.candidates is not None else [key for key in self.toolbox.keys() if key[0] in inputs.kinds]

    @property
    def state_file(self) -> Path | None:
        """The file errors about the resume state name (its JSON record)."""
        return record_path(self.state_dir) if self.state_dir is not None else None

    # -- what trains ---------------------------------------------------------------------------
    def trainable_named(self) -> dict[str, torch.nn.Parameter]:
        named = {f"decoder.{name}": p for name, p in self.model.decoder.named_parameters()}
        for key in self.toolbox.active_keys:
            for name, p in self.toolbox.modules[key].named_parameters():
                if not name.startswith("base_layer."):
                    named[f"toolbox.{key[0]}.{key[1]}.{name}"] = p
        if self.config.selection == "full":
            named.update({f"backbone.{name}": p for name, p in self.full_backbone_named().items()})
        return named

    def full_backbone_named(self) -> dict[str, torch.nn.Parameter]:
        """The backbone's own weights (patch embedding included, toolbox modules excluded): what the
        "full" fine-tuning baseline trains on top of the head."""
        return self.toolbox.backbone_own_named()

    def trained_weights(self, keys: list[ModuleKey] | None = None) -> dict[str, torch.Tensor]:
        """What the run's adapter files hold (`cegate_cli.run.weights` decides), for the modules ever
        selected by default; the "full" baseline's run holds the whole backbone too."""
        keys = keys if keys is not None else in_order(self.progress.ever_selected)
        return run_tensors(self.model, self.toolbox, keys, whole_backbone=self.config.selection == "full")

    def _rebuild_optimizer(self) -> None:
        named = self.trainable_named()
        self.optimizer = build_adamw(named, self.config.lr, self.config.weight_decay, self.optimizer, self.optimizer_names)
        self.optimizer_names = ordered_names(named)

    # -- selection -----------------------------------------------------------------------------
    def fisher_pairs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and targets the Fisher scores are measured on (labeled crops here; the teacher's
        pseudo-labels in self-training). Drawn from their own seed stream, never a training batch."""
        config = self.config
        fisher_batch = self.inputs.sampler.sample(step, config.fisher_samples, config.seed + FISHER_SEED_OFFSET, self.inputs.rank)
        return fisher_batch.images.to(self.inputs.device), fisher_batch.masks.to(self.inputs.device)

    def pickable(self) -> list[ModuleKey]:
        """The candidates the Fisher rule may pick (fisher-cost: those at or above its cost cut;
        the other rules: every candidate). Only these are scored and ranked: a module the rule
        cannot pick would cost scoring its backward pass for a score nothing uses."""
        return modules_to_score(self.config.selection, self.candidates, self.inputs.select_count, self.toolbox.backbone.depth)

    def fisher_keys(self) -> list[ModuleKey]:
        """Modules switched on while scoring: those the rule may pick (self-training adds kept modules)."""
        return self.pickable()

    def active_set(self, chosen: list[ModuleKey]) -> list[ModuleKey]:
        """What runs and trains after a selection: the chosen modules (self-training may add more)."""
        return chosen

    def on_selection(self) -> None:
        """Called after every (re)selection, once the trainable set is in place."""

    def select(self, step: int) -> Selection:
        """Score the modules the rule may pick (and whatever `fisher_keys` adds), pick among the
        pickable ones only, and install the choice. Candidates left unscored are recorded as
        such (`Selection.unscored`), so readers of the run show them as not scored."""
        if self.config.selection not in FISHER_RULES:
            return self._select_by_rule(step)
        if step < self.config.head_warmup:  # the head learns alone first; scoring comes at head_warmup
            empty = FisherScores({}, {}, 0)
            return self._install(Selection(step=step, selected=self.active_set([]), scores=empty, rule=HEAD_WARMUP))
        keys = self.fisher_keys()
        with phase(self.reporter, f"Fisher scoring of {counted(len(keys), 'module')} on {counted(self.config.fisher_samples, 'crop')}"):
            scores, seconds = self._fisher_scores(step, keys)
        pool = set(self.pickable())
        eligible = {key: value for key, value in scores.normalized.items() if key in pool}
        picked = select_by_fisher_rule(self.config.selection, eligible, self.inputs.select_count, self.toolbox.backbone.depth)
        unscored = in_order(key for key in self.candidates if key not in scores.raw)
        selection = Selection(step=step, selected=self.active_set(picked), scores=scores, seconds=seconds, rule=self.config.selection, unscored=unscored)
        self.progress.fisher_seconds += seconds
        return self._install(selection)

    def _fisher_scores(self, step: int, keys: list[ModuleKey]) -> tuple[FisherScores, float]:
        """The Fisher scores of `keys` at `step` (pooled over processes) and the seconds the scoring
        took (drawing the crops not included, as recorded since the first runs)."""
        images, masks = self.fisher_pairs(step)
        ignore = self.inputs.class_table.ignore_index
        started = time.perf_counter()
        with self._autocast():
            scores = empirical_fisher(
                self.model,
                self.toolbox,
                zip(images, masks),
                lambda logits, target: segmentation_loss(logits, target, ignore, self.config.loss, self.inputs.class_weights),
                keys=keys,
                statistic=score_statistic(self.config.selection),
            )
        scores = self.reduce_scores(scores)
        return scores, time.perf_counter() - started

    def _install(self, selection: Selection) -> Selection:
        self.progress.selections.append(selection)
        self.progress.ever_selected.update(selection.selected)
        apply_selection(self.toolbox, selection.selected)
        if self.config.selection == "full":
            for parameter in self.full_backbone_named().values():
                parameter.requires_grad_(True)
            self.toolbox.backbone.grad_from_layer = 0
        self._rebuild_optimizer()
        self.on_selection()
        self.reporter.selection(selection)
        return selection

    def _select_by_rule(self, step: int) -> Selection:
        """The baselines' selections (no Fisher scoring): random k, every candidate, or none."""
        rule = self.config.selection
        if rule in ("random", "random-cost"):
            pool = self.candidates
            if rule == "random-cost":  # fisher-cost's blocks, drawn at random: is it the scores or the blocks?
                pool = within_cost_budget(self.candidates, self.inputs.select_count, self.toolbox.backbone.depth)
            rng = np.random.default_rng([self.config.seed, step, 7])
            picked = rng.choice(len(pool), size=self.inputs.select_count, replace=False)
            chosen = in_order(pool[int(i)] for i in picked)
        elif rule == "all":
            chosen = list(self.candidates)
        elif rule in ("none", "full"):
            chosen = []
        else:
            from cegate_cli.errors import InputError

            raise InputError(f"selection rule {rule!r}: choose one of {', '.join(SELECTIONS)}")
        empty = FisherScores({}, {}, 0)
        return self._install(Selection(step=step, selected=self.active_set(chosen), scores=empty, rule=rule))

    def _selects_at(self, step: int) -> bool:
        """Steps after 0 with a (re)selection: every `reselect_every`, and the end of the head warm-up."""
        config = self.config
        if step == 0:
            return False
        rescoring = bool(config.reselect_every) and step % config.reselect_every == 0
        return rescoring or (step == config.head_warmup and config.selection in FISHER_RULES)

    def reduce_scores(self, scores: Any) -> Any:
        """Hook for distributed training (all-reduce of the scores); identity on one process."""
        return scores

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, resume: bool = False, stop_after: int | None = None) -> TrainOutcome:
        config = self.config
        self.model.to(self.inputs.device)
        started = time.perf_counter()  # train_seconds includes every Fisher scoring, then subtracts it
        if resume:
            self._load_state()
            started = time.perf_counter()
        else:
            self.before_first_selection()
            self.select(0)
        total = self.total_steps
        self.reporter.start(total, self.progress.step)
        completed = True
        step = self.progress.step
        while step < total:
            self.before_step(step)
            if self._selects_at(step) and (not self.progress.selections or self.progress.selections[-1].step != step):
                self.select(step)
            loss = self._train_step(step)
            step += 1
            self.progress.step = step
            self.progress.loss_history.append((step, loss))
            if self.validates_at(step) and self.inputs.validation:
                self._validate(step)
            if step == total or (config.save_every and step % config.save_every == 0):
                self.progress.train_seconds += time.perf_counter() - started
                started = time.perf_counter()
                self._save_state()
            if stop_after is not None and step >= stop_after and step < total:
                completed = False
                break
        self.progress.train_seconds += time.perf_counter() - started
        self.reporter.finish()
        last = self.trained_weights()
        best = self.progress.best_weights or last
        calibration = self.progress.best_calibration  # fitted with the best weights, so None without them
        if calibration is not None and calibration.changed:
            best = with_class_offsets(best, calibration.offsets)
        return TrainOutcome(
            completed=completed,
            step=step,
            selections=list(self.progress.selections),
            ever_selected=in_order(self.progress.ever_selected),
            best_miou=self.progress.best_miou,
            best_step=self.progress.best_step,
            val_history=list(self.progress.val_history),
            loss_history=list(self.progress.loss_history),
            best_weights=best,
            best_selection=list(self.progress.best_selection) if self.progress.best_weights else self.progress.selections[-1].selected,
            last_weights=last,
            fisher_seconds=self.progress.fisher_seconds,
            train_seconds=self.progress.train_seconds - self.progress.fisher_seconds,
            calibration=calibration,
        )

    @property
    def total_steps(self) -> int:
        """Steps the loop runs (self-training may add an adaptation phase to `config.steps`)."""
        return self.config.steps

    def validates_at(self, step: int) -> bool:
        """Whether validation runs once `step` steps are done."""
        every = self.config.val_every
        return bool(every) and (step % every == 0 or step == self.config.steps)

    def keeps_best(self, step: int) -> bool:
        """Whether validation after `step` steps may make those weights the run's best."""
        return self.inputs.keep_best

    def lr_factor_at(self, step: int) -> float:
        """Multiplier of the base learning rate at 0-based `step`."""
        config = self.config
        assert config.warmup_steps is not None  # TrainConfig works it out when it is made
        return lr_factor(step, config.steps, config.warmup_steps, config.poly_power)

    def before_step(self, step: int) -> None:
        """Called before every training step (self-training switches phase here)."""

    def before_first_selection(self) -> None:
        """Called once on a fresh (not resumed) run, before the step-0 selection."""

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.inputs.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def compute_loss(self, step: int) -> torch.Tensor:
        """The loss of training step `step` (model already in train mode)."""
        config = self.config
        batch = self.inputs.sampler.sample(step, config.batch_size, config.seed, self.inputs.rank)
        images = batch.images.to(self.inputs.device, non_blocking=True)
        masks = batch.masks.to(self.inputs.device, non_blocking=True)
        with self._autocast():
            logits = self.forward_model(images)
        return self.task_loss(logits, masks)

    def task_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The run's loss on labeled pixels (`TrainConfig.loss`), for training and Fisher scoring alike."""
        return segmentation_loss(logits, target, self.inputs.class_table.ignore_index, self.config.loss, self.inputs.class_weights)

    def after_optimizer_step(self, step: int) -> None:
        """Called after every optimizer step (self-training updates its teacher here)."""

    def _train_step(self, step: int) -> float:
        config = self.config
        assert self.optimizer is not None
        factor = self.lr_factor_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr * factor
        self.model.train()
        loss = self.compute_loss(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.after_backward()
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        self.optimizer.step()
        self.after_optimizer_step(step)
        value = float(loss.detach())
        self.reporter.step(step + 1, value, config.lr * factor)
        return value

    def after_backward(self) -> None:
        """Hook for distributed training (gradient all-reduce); nothing on one process."""

    @torch.no_grad()
    def _validate(self, step: int) -> float:
        table = self.inputs.class_table
        matrix = ConfusionMatrix(table.num_classes, table.ignore_index)
        keeping = self.keeps_best(step)
        calibrating = keeping and self.config.calibrate
        scores, labels = [], []  # the labeled pixels' class scores, for the calibration of a new best
        # every n-th pixel: memory stays bounded however many crops validate
        stride = pixel_stride(len(self.inputs.validation) * self.config.batch_size * self.config.crop**2)
        self.model.eval()
        for batch in self.inputs.validation:
            images = batch.images.to(self.inputs.device)
            with self._autocast():
                logits = self.model(images)
            prediction = logits.float().max(dim=1).indices.cpu()
            matrix.update(prediction, batch.masks, batch.valid)
            if calibrating:
                labeled = batch.valid & (batch.masks != table.ignore_index)
                scores.append(logits.float().permute(0, 2, 3, 1)[labeled.to(logits.device)][::stride].cpu())
                labels.append(batch.masks[labeled][::stride])
        miou = float(matrix.miou())
        self.progress.val_history.append((step, miou))
        if keeping and (self.progress.best_miou is None or miou > self.progress.best_miou):
            self.progress.best_miou = miou
            self.progress.best_step = step
            self.progress.best_weights = self.trained_weights()
            self.progress.best_selection = list(self.toolbox.active_keys)
            self.progress.best_calibration = (
                fit_class_offsets(torch.cat(scores), torch.cat(labels), table.num_classes, table.ignore_index) if calibrating else None
            )
        self.reporter.validation(step, miou)
        return miou

    # -- resume state (train/resume.py) ------------------------------------------------------
    def _save_state(self) -> None:
        resume.save_state(self)

    def _load_state(self) -> None:
        resume.load_state(self)

    def extra_state(self) -> dict[str, Any]:
        """More for the resume state (self-training: the teacher, pseudo-label history)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` saved; raise RunFolderError when it does not fit."""
