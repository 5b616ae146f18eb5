"""run.json's own sections as frozen classes: each written by its `to_dict` and read back by its
`from_dict`, every value checked against its field's type (`cegate_cli.infra.record_fields`).

    backbone     BackboneRecord    the source, the shape, the band mapping, the family's section
    data         DataRecord        the folders and images a run learned from, label counts
    parameters   ParameterRecord   how many parameters the backbone, the modules and the head hold
    metrics      MetricsRecord     validation and loss over the steps, calibration
    timing       TimingRecord      seconds spent scoring and training, on which device
    adaptation   AdaptationRecord  self-training: target, settings, pseudo-labels, the guard's verdict

The option sections (toolbox, training) are their option classes, bands, normalisation and
classes theirs (`RunManifest` in manifest.py puts them together). A section holds what a run
has recorded so far: metrics, timing and parameters exist once training has ended, adaptation
only for self-training runs (None, and `{}` in run.json, until then). Keys that only some runs
have are written only by those, so run.json reads as it always has.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from cegate_cli.backbone.family import FamilyRecord
from cegate_cli.backbone.registry import get_family
from cegate_cli.backbone.source import BackboneSource
from cegate_cli.data.stats import BandStats
from cegate_cli.infra.record_fields import FieldTypeError, record_fields
from cegate_cli.options.train import SelfTrainConfig


def _object(data: Any, section: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise FieldTypeError(f"{section} is not an object of fields")
    return data


def _present(record: Any, *names: str) -> dict[str, Any]:
    """The fields `names` of `record` that hold a value (keys only some runs write)."""
    return {name: _json(getattr(record, name)) for name in names if getattr(record, name) is not None}


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    return value


# ----------------------------------------------------------------------------------- backbone


@dataclass(frozen=True)
class BandCopy:
    """One of the run's bands and the pretrained band (by name, or by channel when the weights name
    none) it starts from; None: none, the family's `unmatched_band` says what it is then."""

    band: str
    copied_from: str | int | None


@dataclass(frozen=True)
class BackboneRecord:
    """Which backbone a run adapted, exactly (source: spec, revision, sha256), and how it was fitted."""

    source: BackboneSource
    architecture: str
    pretrained_bands: tuple[str, ...] | None
    band_mapping: tuple[BandCopy, ...]
    patch_size: int
    embed_dim: int
    depth: int
    parameters: int
    family: FamilyRecord | None = None
    """The family's own section (Galileo's inputs and groups), written and read by the family."""

    @property
    def inputs(self) -> Any:
        """The family's inputs (`predict` feeds the backbone as the run did); None: it takes none."""
        return None if self.family is None else self.family.inputs

    def to_dict(self) -> dict[str, Any]:
        data = {
            "source": self.source.to_dict(),
            "architecture": self.architecture,
            "pretrained_bands": None if self.pretrained_bands is None else list(self.pretrained_bands),
            "band_mapping": [{"band": m.band, "copied_from": m.copied_from} for m in self.band_mapping],
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "parameters": self.parameters,
        }
        key = get_family(self.source.kind).record_key
        if self.family is not None and key is not None:
            data[key] = self.family.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> BackboneRecord:
        data = _object(data, "backbone")
        source = BackboneSource.from_dict(_object(data.get("source"), "backbone.source"))
        family = get_family(source.kind)
        own = {k: v for k, v in data.items() if k not in ("source", "family")}  # the family's section has its own key
        values = record_fields(cls, own, section="backbone", unknown="drop")
        section = data.get(family.record_key) if family.record_key else None
        return cls(source=source, **values, family=None if section is None else family.read_record(section))


# --------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataRecord:
    """What a run learned from. A run on a labeled source names the source folder, its training and
    validation images and label counts (and, with --target, the target); a run continued `--from`
    another names that run and the target."""

    source: str | None = None
    from_run: str | None = None
    train_images: tuple[str, ...] = ()
    val_images: tuple[str, ...] = ()
    target: str | None = None
    target_images: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] | None = None
    """What the run did that is no problem (an alpha-tagged band read as data); None in a run.json
    from before notes were kept apart from the warnings (it writes out without the key)."""
    label_pixels: dict[str, int] | None = None
    """Labeled pixels per class id (JSON keys are text)."""
    label_images: dict[str, int] | None = None
    """Images showing each class id."""
    class_weights: tuple[float, ...] | None = None
    """The loss's class weights; None for plain cross-entropy."""

    @property
    def label_counts(self) -> dict[int, int]:
        """Labeled pixels per class id; empty for a run without labels (or from before they were kept)."""
        return {int(k): v for k, v in (self.label_pixels or {}).items()}

    def with_target(self, target: str, images: tuple[str, ...]) -> DataRecord:
        return replace(self, target=target, target_images=images)

    def to_dict(self) -> dict[str, Any]:
        if self.from_run is not None:
            return {"from_run": self.from_run, **_present(self, "target", "target_images"), "warnings": list(self.warnings), **_present(self, "notes")}
        data = {
            "source": self.source,
            "train_images": list(self.train_images),
            "val_images": list(self.val_images),
            "warnings": list(self.warnings),
            **_present(self, "notes"),
            "label_pixels": dict(self.label_pixels or {}),
            "label_images": dict(self.label_images or {}),
            "class_weights": None if self.class_weights is None else list(self.class_weights),
        }
        return {**data, **_present(self, "target", "target_images")}

    @classmethod
    def from_dict(cls, data: Any) -> DataRecord:
        return cls(**record_fields(cls, _object(data, "data"), section="data", unknown="drop"))


# --------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ParameterRecord:
    """Parameter counts: the backbone, the candidate modules, those the run trained (what its adapter
    files hold) and those switched on at the end, the head, and the share that trained."""

    backbone: int
    candidates: int
    modules_trained: int
    modules_final: int
    decoder: int
    trainable_share: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> ParameterRecord:
        return cls(**record_fields(cls, _object(data, "parameters"), section="parameters", unknown="drop"))


# ------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class MetricsRecord:
    """How training went: validation mIoU and loss over the steps (the loss thinned to about 200
    points), the best step, and the class-score calibration fitted afterwards."""

    best_val_miou: float | None = None
    best_step: int | None = None
    last_val_miou: float | None = None
    val_history: tuple[tuple[int, float], ...] = ()
    final_loss: float | None = None
    loss_history: tuple[tuple[int, float], ...] = ()
    calibration: dict[str, Any] | None = None
    """`train.calibrate.Calibration.to_dict()`: offsets per class, validation mIoU before and after."""
    validation: str | None = None
    """Self-training runs: what was validated on ("source images"), None: nothing."""
    self_training: bool = False
    """Whether the run self-trained: only those name their validation (as null when none)."""

    @property
    def calibrated(self) -> bool:
        """Whether calibration moved a class score, so the best weights saved carry its offsets."""
        return bool(self.calibration) and any(self.calibration["offsets"])  # type: ignore[index]

    @property
    def saved_val_miou(self) -> float | None:
        """Validation mIoU of the weights in adapter.safetensors: the best step's, after calibration
        where it moved a class score (the saved weights carry the offsets), or the last step's where
        the run keeps its last step (self-training has no best step)."""
        if self.calibrated:
            return float(self.calibration["val_miou_after"])  # type: ignore[index]
        return self.best_val_miou if self.best_val_miou is not None else self.last_val_miou

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "best_val_miou": self.best_val_miou,
            "best_step": self.best_step,
            "last_val_miou": self.last_val_miou,
            "val_history": _json(self.val_history),
            "final_loss": self.final_loss,
            "loss_history": _json(self.loss_history),
            **_present(self, "calibration"),
        }
        if self.self_training:
            data["validation"] = self.validation
        return data

    @classmethod
    def from_dict(cls, data: Any) -> MetricsRecord:
        data = _object(data, "metrics")
        values = record_fields(cls, {k: v for k, v in data.items() if k != "self_training"}, section="metrics", unknown="drop")
        return cls(**values, self_training="validation" in data)


def calibrated(metrics: dict[str, Any]) -> bool:
    """`MetricsRecord.calibrated` of a metrics section as reports hold it (JSON)."""
    return MetricsRecord.from_dict(metrics).calibrated


def saved_val_miou(metrics: dict[str, Any]) -> float | None:
    """`MetricsRecord.saved_val_miou` of a metrics section as reports hold it (JSON)."""
    return MetricsRecord.from_dict(metrics).saved_val_miou


# ------------------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class TimingRecord:
    fisher_seconds: float
    train_seconds: float
    total_seconds: float
    device: str
    processes: int | None = None
    """Processes that trained together (torchrun); None in runs from before it was recorded."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "fisher_seconds": self.fisher_seconds,
            "train_seconds": self.train_seconds,
            "total_seconds": self.total_seconds,
            "device": self.device,
            **_present(self, "processes"),
        }

    @classmethod
    def from_dict(cls, data: Any) -> TimingRecord:
        return cls(**record_fields(cls, _object(data, "timing"), section="timing", unknown="drop"))


# --------------------------------------------------------------------------------- adaptation


@dataclass(frozen=True)
class AdaptationRecord:
    """Self-training: where the run adapted to and from what, with which settings, and what came of
    it (pseudo-label statistics over time, the guard's verdict, which weights it kept and why)."""

    mode: str
    target: str
    target_images: int
    from_run: str | None
    kept_modules: tuple[dict[str, Any], ...]
    """The modules of the run continued `--from` that stay switched on (kind, layer)."""
    normalization: str
    """`--target-norm` as asked."""
    source_normalization: BandStats
    self_training: SelfTrainConfig
    weights: str
    """Which weights the adapter files hold, in a sentence."""
    pseudo_labels: tuple[dict[str, Any], ...] = ()
    teacher_bytes: int | None = None
    source_steps: int | None = None
    adapt_steps: int | None = None
    normalization_choice: dict[str, Any] | None = None
    """source-first with --target-norm auto: the statistics chosen and why."""
    guard: dict[str, Any] | None = None
    """source-first: `train.guard.GuardVerdict.to_dict()`."""
    prototypes: dict[str, Any] | None = None
    """The head's blend with the target's class centroids (`train.prototypes.PrototypeFit`), its
    share and what it changed; None when `--prototypes 0` or for runs before the option."""

    @property
    def normalization_used(self) -> str:
        """The statistics the run's target was read with: the one auto chose, else the one asked for."""
        return (self.normalization_choice or {}).get("chosen") or self.normalization

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "target": self.target,
            "target_images": self.target_images,
            "from_run": self.from_run,
            "kept_modules": _json(self.kept_modules),
            "normalization": self.normalization,
            "source_normalization": self.source_normalization.to_dict(),
            "self_training": self.self_training.to_dict(),
            "weights": self.weights,
            "pseudo_labels": _json(self.pseudo_labels),
            **_present(self, "teacher_bytes", "source_steps", "adapt_steps", "normalization_choice", "guard", "prototypes"),
        }

    @classmethod
    def from_dict(cls, data: Any) -> AdaptationRecord:
        data = _object(data, "adaptation")
        nested = ("source_normalization", "self_training")
        values = record_fields(cls, {k: v for k, v in data.items() if k not in nested}, section="adaptation", unknown="drop")
        return cls(
            **values,
            source_normalization=BandStats.from_dict(_object(data.get("source_normalization"), "adaptation.source_normalization")),
            self_training=SelfTrainConfig.from_dict(_object(data.get("self_training"), "adaptation.self_training")),
        )
