"""Everything that decides how a run trains; stored in run.json and checked on `--resume`.

Torch-free, beside the other option classes, so the run folder's record (run/) reads it without
the trainers (train/) that use it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from cegate_cli.infra.option_fields import option
from cegate_cli.infra.shared_help import DEVICE_HELP

NOT_FINGERPRINTED = ("val_crops",)
"""Settings that need not match on resume although older resume states recorded them: left out of
`resume_fingerprint`, and dropped from a saved one before the two are compared. How many crops
validate never changes the trained weights (states before 64 became the default hold 16)."""

LOSSES = ("ce", "balanced", "balanced+dice")
"""'ce': plain cross-entropy; 'balanced': cross-entropy with `balanced_class_weights`
(train/losses.py); 'balanced+dice': that plus `soft_dice`."""

MAX_SEED = 2**32 - 1
"""numpy's legacy seeding and many samplers take 32-bit seeds; torch's take 64 bits."""

MAX_DEFAULT_WARMUP_STEPS = 25
"""The derived warm-up (a tenth of the steps) never exceeds this."""


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains. The defaults are the settings measured on real imagery (the NAIP tiles,
    docs/benchmarks-real.md): 300 steps of 4 crops of 128 px fit a CPU in minutes, and the head,
    which starts from nothing, needs a higher learning rate than the 1e-3 a fine-tuned backbone
    would take to learn in that budget.

    What depends on the run's length (the warm-up, the cap on the save interval) is worked out
    here when the config is made, so a Python caller trains exactly as `cegate adapt` with the
    same values does. The results are ordinary values: `dataclasses.replace(config, steps=...)`
    keeps them, so pass `warmup_steps=None` (and the save interval meant) to work them out again
    for the new length.
    """

    steps: int = option(300, help="Training steps.", flag="--steps")
    batch_size: int = option(4, help="Crops per step (per process).", flag="--batch-size")
    crop: int = option(128, help="Crop size in pixels (a multiple of the patch size).", flag="--crop")
    lr: float = option(5e-3, help="Peak learning rate (AdamW, poly decay).", flag="--lr")
    weight_decay: float = 0.01
    warmup_steps: int | None = None
    """Steps of linear learning-rate warm-up. None: a tenth of the steps, at most
    `MAX_DEFAULT_WARMUP_STEPS` (25 for the default 300 steps)."""
    poly_power: float = 0.9
    grad_clip: float = 1.0
    seed: int = option(0, help="Seed for the head, crops and augmentation.", flag="--seed")
    device: str = option("auto", help=DEVICE_HELP, flag="--device")
    val_fraction: float = option(0.2, help="Share of images held out for validation mIoU, in [0, 1).", flag="--val-fraction")
    val_every: int = option(100, help="Validate every N steps (0 = never).", flag="--val-every")
    val_crops: int = 64
    """Validation crops (fixed windows over the held-out images) that choose the best step and fit
    the calibration. 64: on the NAIP tiles, calibrating on fewer crops sometimes cost a rare class
    more than it gained, while with 64 calibration helped and every class's mean IoU was above
    the per-pixel classifier's (docs/benchmarks-real.md). A validation pass costs about as much as
    predicting that many pixels."""
    save_every: int = option(50, help="Write the resume state every N steps.", flag="--save-every")
    """Write the resume state every N steps (and always at the last step). Taken as at most `steps`:
    an interval longer than the run means "at the end", and is recorded so; below 1 is refused."""
    decoder: str = option(
        "linear-pixel",
        help="Segmentation head: linear, linear-pixel (linear plus a full-resolution per-pixel path) or unet. Not with --from.",
        flag="--decoder",
    )
    """Segmentation head (decoder.py DECODERS). Default linear-pixel, the linear head plus a
    full-resolution per-pixel path: on the NAIP tiles it beat the linear head with tiny (roads
    most) and tied it with galileo-nano, at under a thousand more parameters; the linear head in
    turn matched or beat the unet head in less time (docs/benchmarks-real.md, block head_study)."""
    select: str = option(
        "0.25",
        help="How many modules to train: a count, written as a whole number (6), or a fraction of all candidates, "
        "written with a decimal point (0.25; 1.0 = all).",
        flag="--select",
    )
    reselect_every: int = option(0, help="Re-score and reselect every N steps (0 = once).", flag="--reselect-every")
    fisher_samples: int = option(16, help="Crops used to estimate the Fisher scores.", flag="--fisher-samples")
    augment: bool = option(True, help="Flips, rotations, band jitter.", flag="--augment")
    illumination: float = option(0.0, help="Brightness and contrast jitter shared by all bands of a source crop (0 = off).", flag="--illumination")
    """With `augment`: strength of a brightness and contrast jitter shared by every band of a
    source crop (data/crops.py Augment), so the model does not learn the source's exposure."""
    rare_crops: int = option(4, help="Draw N candidate crops and keep the one richest in rare classes (1 = plain random crops).", flag="--rare-crops")
    """Candidate windows per training crop; above 1 the one whose labels weigh most by the
    balanced class weights is kept (data/crops.py), so rare classes are seen more often (1 =
    plain random crops). Default 4: on the NAIP tiles, where water is 1.4% of the pixels, it
    lifted water's IoU most (docs/benchmarks-real.md)."""
    loss: str = option("balanced+dice", help="ce, balanced (classes weighted by their rarity in the labels) or balanced+dice.", flag="--loss")
    """Task loss (LOSSES): "ce", "balanced" (class-weighted by the labels' shares),
    "balanced+dice". Default balanced+dice: real labels are imbalanced and mIoU weighs every class
    alike; on the NAIP tiles plain ce left building and water near 0 IoU (docs/benchmarks-real.md)."""
    class_weight_power: float = option(
        0.5,
        help="Exponent of the balanced class weights, (median share / class share) ** power: 0 weighs every class alike, "
        "higher favours rare classes' recall over a common class's precision.",
        flag="--class-weight-power",
    )
    """Exponent of the balanced class weights (median share / class share) ** power, used by the
    "balanced" losses and by the rare-class crop choice (train/losses.py). 0: every class alike;
    1: full inverse frequency. Higher values trade a majority class's precision for rare classes'
    recall."""
    calibrate: bool = option(
        True,
        help="After training, fit one offset per class on the validation images so no class is overpredicted (stored in the head's weights).",
        flag="--calibrate",
    )
    """After training, fit one offset per class on the validation crops and add it to the head's
    class scores (train/calibrate.py), so the rare-class pressure of the loss and crops does not
    overpredict a class. On the NAIP tiles it raised mIoU and lifted bare land, which background
    pixels had flooded, above the per-pixel classifier (docs/benchmarks-real.md). Needs
    validation images; self-training runs are not calibrated (their validation is on the
    source)."""
    head_warmup: int = 0
    """Fisher rules: steps the head trains alone (frozen backbone, no module) before the first
    scoring, so the scores measure gradients through a head that has learnt something instead of
    a random one (beyond the paper). 0: score at step 0, as the paper does."""
    selection: str = option(
        "fisher-cost",
        help="fisher (the method); fisher-cost (upper half of the blocks only: a shorter backward pass), fisher-block "
        "(ranked within each block), fisher-agree (squared mean gradient); or a baseline: random (same count), random-cost "
        "(same count, fisher-cost's blocks), all, "
        "none (head only), full (whole backbone).",
        flag="--selection",
    )
    """Which modules train: "fisher-cost" (the default: the top `select` by Fisher score among the
    upper half of the blocks, so the backward pass stops halfway); "fisher" (the paper's global top
    `select`), "fisher-block" and "fisher-agree" (ranked within each block, or by the squared mean
    gradient; see fisher.select_by_fisher_rule). The others are baselines for the benchmarks:
    "random" (`select` modules drawn at random; "random-cost": drawn from fisher-cost's blocks),
    "all" (every candidate), "none" (frozen backbone, head only), "full" (no modules; the whole
    backbone, patch embedding included, trains with the head; its run saves the backbone too).

    Default fisher-cost, by the selection test (ahead of random selection of as many modules and
    of all modules on most paired seeds) on the NAIP tiles at these defaults: with tiny it passes
    at half the backward pass; with galileo-nano no rule passes, all modules is best by less than
    the seeds' noise and fisher-cost is the cheapest rule that ties it (the head alone and
    random-cost fall behind beyond the noise). docs/benchmarks.md."""

    def __post_init__(self) -> None:
        if self.warmup_steps is None:
            object.__setattr__(self, "warmup_steps", min(MAX_DEFAULT_WARMUP_STEPS, max(0, self.steps // 10)))
        if self.steps >= 1 and self.save_every > self.steps:  # below 1 stays, for check() to refuse by name
            object.__setattr__(self, "save_every", self.steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From run.json's "training" section; a value of the wrong type is a FieldTypeError naming it."""
        from cegate_cli.infra.record_fields import record_fields

        known = record_fields(cls, data, section="training", unknown="drop")
        # Runs recorded before these options existed trained with plain ce and random crops.
        known.setdefault("loss", "ce")
        known.setdefault("rare_crops", 1)
        known.setdefault("selection", "fisher")  # and the plain Fisher rule, the default until fisher-cost
        return cls(**known)

    def check(self) -> None:
        """Reject values a user can type but training cannot use, before anything is written.

        Without this, `--lr -1` failed inside AdamW after run.json was written (a run left
        "training" forever), `--fisher-samples 0` surfaced as an internal crop-sampler message
        and `--val-fraction 1.5` was silently capped; every message names the flag.
        """
        from cegate_cli.errors import InputError
        from cegate_cli.infra.capacity import check_pass
        from cegate_cli.model.decoder_names import DECODERS
        from cegate_cli.toolbox.select_spec import parse_select_spec

        at_least_one = {
            "--steps": "steps",
            "--batch-size": "batch_size",
            "--fisher-samples": "fisher_samples",
            "--crop": "crop",
            "validation crops": "val_crops",
            "--save-every": "save_every",
            "--rare-crops": "rare_crops",
        }
        for flag, name in at_least_one.items():
            if getattr(self, name) < 1:
                raise InputError(f"{flag} {getattr(self, name)}: must be at least 1 (default {_default(name)})")
        not_negative = {
            "--seed": "seed",
            "--val-every": "val_every",
            "--reselect-every": "reselect_every",
            "warmup steps": "warmup_steps",
            "head_warmup": "head_warmup",
        }
        for flag, name in not_negative.items():
            if getattr(self, name) < 0:
                raise InputError(f"{flag} {getattr(self, name)}: must be 0 or more (default {_default(name)})")
        for flag, name in (("--batch-size", "batch_size"), ("--fisher-samples", "fisher_samples")):  # each one pass
            check_pass(side=self.crop, side_flag="--crop", batch=getattr(self, name), batch_flag=flag, unit="crop")
        if self.seed > MAX_SEED:
            raise InputError(f"--seed {self.seed}: must be 0 to {MAX_SEED} (the random generators take 32-bit seeds)")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr {self.lr}: the learning rate must be a positive number (default {_default('lr')})")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InputError(f"weight decay {self.weight_decay}: must be a number >= 0")
        if not (math.isfinite(self.class_weight_power) and 0 <= self.class_weight_power <= 2):
            raise InputError(f"--class-weight-power {self.class_weight_power}: must lie in [0, 2] (default {_default('class_weight_power')})")
        if not (math.isfinite(self.illumination) and 0 <= self.illumination <= 2):
            raise InputError(f"--illumination {self.illumination}: must lie in [0, 2] (default {_default('illumination')})")
        if not (math.isfinite(self.poly_power) and self.poly_power >= 0):
            raise InputError(f"poly decay power {self.poly_power}: must be a number >= 0")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise InputError(f"gradient clip {self.grad_clip}: must be a number >= 0 (0 = off)")
        if not (math.isfinite(self.val_fraction) and 0 <= self.val_fraction < 1):
            raise InputError(f"--val-fraction {self.val_fraction}: the share of images held out for validation lies in [0, 1) (e.g. 0.2; 0 = no validation)")
        if self.decoder not in DECODERS:
            raise InputError(f"--decoder {self.decoder!r}: choose one of {', '.join(DECODERS)}")
        if self.loss not in LOSSES:
            raise InputError(f"--loss {self.loss!r}: choose {', '.join(LOSSES)}")
        if self.selection not in SELECTIONS:
            raise InputError(f"--selection {self.selection!r}: choose {', '.join(SELECTIONS)}")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise InputError(f"--device {self.device!r}: choose auto, cpu or cuda")
        parse_select_spec(self.select)
        if self.head_warmup >= self.steps:
            raise InputError(f"head_warmup {self.head_warmup}: the head-only steps must end before the last step ({self.steps})")

    def resume_fingerprint(self) -> dict[str, Any]:
        """Settings that must match for `--resume` to continue the same run (device may change)."""
        data = self.to_dict()
        data.pop("device")
        data.pop("save_every")  # how often state is written never changes the weights
        for name in NOT_FINGERPRINTED:
            data.pop(name)
        if data["selection"] == "fisher":
            data.pop("selection")  # the rule of every state written before the option existed: those still resume
        if data["head_warmup"] == 0:
            data.pop("head_warmup")  # likewise
        if data["calibrate"]:
            data.pop("calibrate")  # states from before calibration resume (calibrated only if a later step is best)
        if data["illumination"] == 0.0:
            data.pop("illumination")  # states from before the option resume
        if data["class_weight_power"] == 0.5:
            data.pop("class_weight_power")  # likewise (states before the option weighted with the square root)
        return data


def _default(name: str) -> Any:
    """A TrainConfig field's default (derived ones for the default length), shown in messages as a
    value that works."""
    return getattr(TrainConfig(), name)


SELECTIONS = ("fisher", "fisher-cost", "fisher-block", "fisher-agree", "random", "random-cost", "all", "none", "full")

TARGET_NORMS = ("auto", "target", "source")

SCHEDULES = ("source-first", "joint")
"""How a run with a labeled source uses the target: "source-first" trains exactly the source-only
run, then adapts it for `adapt_steps` more steps and keeps the adapted model only if the guard
finds nothing wrong; "joint" is DACS from step 0 (the teacher starts untrained)."""


@dataclass(frozen=True)
class SelfTrainConfig:
    """How self-training on an unlabeled target runs (mode "source+target" or "target").

    The defaults follow DACS (Tranheden et al., 2021): EMA teacher with alpha 0.99, pseudo-labels
    weighted by the share of pixels above 0.968 confidence, half the source classes pasted. Two
    departures, both measured on the demo scenes: class-balanced thresholds (train/pseudo.py) and
    no pseudo-label on unconfident pixels (train/selftrain.py).
    """

    confidence: float = option(0.968, help="Teacher probability above which a target pixel's pseudo-label counts.", flag="--confidence")
    """Teacher softmax probability above which a target pixel's pseudo-label counts as confident."""
    class_balance: float = option(
        0.5,
        help="Per class, this share of its most confident target pixels counts even below --confidence (0 = off).",
        flag="--class-balance",
    )
    """Per class, its most confident share of pixels in a batch counts as confident even below
    `confidence` (0 = the fixed threshold alone, as in DACS); see train/pseudo.py for why."""
    ema: float = option(0.99, help="Teacher update: teacher = ema * teacher + (1 - ema) * student.", flag="--ema")
    """Teacher = ema * teacher + (1 - ema) * student after every step."""
    target_norm: str = option(
        "auto",
        help="Normalise target images with the target folder's statistics, the source's, or (auto) those the source model is more confident under.",
        flag="--target-norm",
    )
    """'target': target crops are normalised with statistics of the target folder (stored in the run
    for predict); 'source': with the source run's statistics; 'auto' (source-first): the target's
    when they make the source model clearly more confident on the target (train/guard.py
    `choose_normalization`), else the source's, decided when self-training begins; elsewhere as
    'target'. A sensor shift is undone by the target's statistics, a region's other class mix is not."""
    classmix: bool = True
    """source+target: paste half the classes of each source crop onto a target crop (DACS)."""
    strong_gain: float = 0.3
    strong_offset: float = 0.3
    strong_noise: float = 0.1
    strong_blur: float = 0.5
    """Student's strong view: per-band gain/offset jitter, Gaussian noise (normalised units) and the
    probability of a Gaussian blur."""
    stats_every: int | None = None
    """Record pseudo-label statistics every N steps (run.json, `inspect`). None: a fiftieth of the
    run's steps, at least 1 (about 50 records whatever the length), filled in by `for_steps`."""
    prior_alignment: bool = option(
        False,
        help="Align the teacher's class shares to the source labels' (guards against collapse).",
        flag="--prior-alignment",
    )
    """Align the teacher's class shares to the source labels' before taking pseudo-labels
    (train/pseudo.py `align_to_prior`): a guard against collapse onto the majority classes."""
    drift_warning: float = 0.25
    """Warn when the trained teacher's pseudo-label class shares, pooled over a few records at each
    end (train/pseudo.py `pooled_drift`), move this far (total variation) from its own shares when
    self-training began."""
    schedule: str = option(
        "source-first",
        help="source-first: train the source-only run, then adapt it and keep it only if the guard finds nothing wrong; joint: DACS self-training from step 0.",
        flag="--adapt-schedule",
    )
    """With a labeled source: "source-first" or "joint" (see SCHEDULES)."""
    adapt_steps: int | None = option(None, help="source-first: self-training steps after the source run (default: a quarter of --steps).", flag="--adapt-steps")
    """source-first: self-training steps after the source run. None: a quarter of the steps (at
    least 1), filled in by `for_steps`, which keeps a run within 1.5x the time of source only."""
    source_batch: bool = True
    """source+target: the student also learns a plain batch of source crops every step (DACS); off,
    only the source pixels ClassMix pastes into target crops carry source labels."""
    guard: bool = option(
        True,
        help="source-first: keep the source model when adaptation makes a class vanish from the target map or the source validation fall.",
        flag="--guard",
    )
    """source-first: keep the source model when the adapted one looks worse on what can be seen
    without target labels (a class vanishing from the target map, source validation falling)."""
    prototypes: float = option(
        0.0,
        help="At the end, blend this share of the target's class centroids into the head's classifier (0 = off).",
        flag="--prototypes",
    )
    """The kept model's class scores become (1 - p) of its classifier's and p of the nearest target
    class centroid's, found without labels (train/prototypes.py); 0 leaves the head as trained."""

    def for_steps(self, steps: int) -> SelfTrainConfig:
        """This configuration for a run of `steps` steps: what it leaves to the run's length filled in.

        Called where the length is known (`AdaptOptions`, `SelfTrainer`), because it lives in the
        run's `TrainConfig`, not here.
        """
        filled = self
        if filled.adapt_steps is None:
            filled = replace(filled, adapt_steps=max(1, steps // 4))
        if filled.stats_every is None:
            filled = replace(filled, stats_every=max(1, steps // 50))
        return filled

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelfTrainConfig:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known.setdefault("schedule", "joint")  # runs recorded before the option trained jointly, without a guard
        known.setdefault("guard", False)
        known.setdefault("target_norm", "target")
        known.setdefault("prototypes", 0.0)  # runs recorded before the option kept the head as trained
        return cls(**known)

    def check(self) -> None:
        """Reject values a user can type but training cannot use."""
        from cegate_cli.errors import InputError

        if not 0.0 < self.confidence < 1.0:
            raise InputError(f"--confidence {self.confidence}: must lie strictly between 0 and 1 (DACS uses 0.968)")
        if not 0.0 <= self.class_balance <= 1.0:
            raise InputError(f"--class-balance {self.class_balance}: a share between 0 and 1 (0 = fixed threshold only)")
        if not 0.0 <= self.ema < 1.0:
            raise InputError(f"--ema {self.ema}: must be at least 0 and below 1 (e.g. 0.99)")
        if self.schedule not in SCHEDULES:
            raise InputError(f"--adapt-schedule {self.schedule!r}: choose {' or '.join(SCHEDULES)}")
        if self.adapt_steps is not None and self.adapt_steps < 1:
            raise InputError(f"--adapt-steps {self.adapt_steps}: must be at least 1 (default: a quarter of --steps)")
        if not 0.0 <= self.prototypes <= 1.0:
            raise InputError(f"--prototypes {self.prototypes}: a share between 0 and 1 (0 = keep the head as trained)")
        if self.target_norm not in TARGET_NORMS:
            raise InputError(f"--target-norm {self.target_norm!r}: choose {' or '.join(TARGET_NORMS)}")
        if self.stats_every is not None and self.stats_every < 1:
            raise InputError(f"pseudo-label statistics interval must be at least 1 step, got {self.stats_every}")
        if min(self.strong_gain, self.strong_offset, self.strong_noise) < 0 or not 0.0 <= self.strong_blur <= 1.0:
            raise InputError("strong augmentation strengths must be >= 0 and the blur probability within [0, 1]")
