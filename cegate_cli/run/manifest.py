"""run.json and config.yaml: the record of a run (`RunManifest`) and the options that made it.

run.json is everything needed to rebuild the model and explain it; its keys are read back by
`predict`, `evaluate`, `inspect` and `adapt --resume`/`--from`, so they change only with
RUN_FORMAT. Both files are written atomically (temporary name, then rename).
"""

from __future__ import annotations

import datetime as _dt
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cegate_cli import __version__
from cegate_cli.data.bands import BandChoice
from cegate_cli.data.classes import ClassTable
from cegate_cli.data.stats import BandStats
from cegate_cli.errors import CegateError, DocumentError, RunFolderError
from cegate_cli.infra.atomic import write_json_atomic, write_text_atomic, writing
from cegate_cli.infra.documents import read_json
from cegate_cli.infra.record_fields import FieldTypeError
from cegate_cli.options.train import TrainConfig
from cegate_cli.run.layout import ADAPTER_BEST, ADAPTER_LAST, CONFIG_YAML, RUN_FORMAT, RUN_JSON
from cegate_cli.run.replaced import stopped_overwrite_note
from cegate_cli.run.sections import (
    AdaptationRecord,
    BackboneRecord,
    DataRecord,
    MetricsRecord,
    ParameterRecord,
    TimingRecord,
)
from cegate_cli.toolbox import ToolboxConfig
from cegate_cli.toolbox.fisher import Selection
from cegate_cli.toolbox.module_key import ModuleKey, keys_from_json, keys_to_json


@dataclass
class RunManifest:
    """The contents of run.json, each section its own class (run/sections.py for the record's own).
    Metrics, timing and parameters are None until training has ended, adaptation for runs that
    do not self-train; run.json holds `{}` for them."""

    backbone: BackboneRecord
    bands: BandChoice
    normalization: BandStats
    classes: ClassTable
    toolbox: ToolboxConfig
    training: TrainConfig
    kinds: tuple[str, ...]
    select_count: int
    mode: str = "supervised"
    """One of "supervised", "source+target" (labeled source + unlabeled target), "target" (--from RUN)."""
    status: str = "training"
    selections: list[Selection] = field(default_factory=list)
    ever_selected: list[ModuleKey] = field(default_factory=list)
    best_selection: list[ModuleKey] = field(default_factory=list)
    data: DataRecord = field(default_factory=DataRecord)
    parameters: ParameterRecord | None = None
    metrics: MetricsRecord | None = None
    timing: TimingRecord | None = None
    adaptation: AdaptationRecord | None = None
    """Self-training runs: target folder, run continued (--from), kept modules, settings, source
    normalisation, pseudo-label statistics over time. None for supervised runs."""
    cegate_version: str = __version__
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    run_id: str | None = field(default_factory=lambda: uuid.uuid4().hex)
    """Random id of this run, also in the metadata of its adapter files: weights copied in from
    another run do not carry it. None for runs written before the id existed (not checked)."""

    @property
    def final_selection(self) -> list[ModuleKey]:
        return self.selections[-1].selected if self.selections else []

    @property
    def saved_val_miou(self) -> float | None:
        """Validation mIoU of the weights in adapter.safetensors (see `MetricsRecord.saved_val_miou`)."""
        return None if self.metrics is None else self.metrics.saved_val_miou

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "run_id": self.run_id,
            "cegate_version": self.cegate_version,
            "created": self.created,
            "status": self.status,
            "mode": self.mode,
            "backbone": self.backbone.to_dict(),
            "bands": self.bands.to_dict(),
            "normalization": self.normalization.to_dict(),
            "classes": self.classes.to_dict(),
            "toolbox": self.toolbox.to_dict(),
            "selection": {
                "kinds": list(self.kinds),
                "count": self.select_count,
                "reselect_every": self.training.reselect_every,
                "fisher_samples": self.training.fisher_samples,
                "final": keys_to_json(self.final_selection),
                "ever_selected": keys_to_json(self.ever_selected),
                "best": keys_to_json(self.best_selection),
                "history": [s.to_dict() for s in self.selections],
            },
            "training": self.training.to_dict(),
            "data": self.data.to_dict(),
            **{name: {} if getattr(self, name) is None else getattr(self, name).to_dict() for name in LATER_SECTIONS},
            "weights": {"best": ADAPTER_BEST, "last": ADAPTER_LAST},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunManifest:
        """From the object in run.json; a missing or damaged section is a FieldTypeError naming it."""
        selection = _section(data, "selection", lambda v: _mapping(v, "selection"))
        later = {name: _section(data, name, lambda v, r=reader: None if v == {} else r(v), None) for name, reader in LATER_SECTIONS.items()}
        return cls(
            backbone=_section(data, "backbone", BackboneRecord.from_dict),
            bands=_section(data, "bands", BandChoice.from_dict),
            normalization=_section(data, "normalization", BandStats.from_dict),
            classes=_section(data, "classes", ClassTable.from_dict),
            toolbox=_section(data, "toolbox", ToolboxConfig.from_dict),
            training=_section(data, "training", TrainConfig.from_dict),
            kinds=_section(selection, "selection.kinds", lambda v: tuple(str(k) for k in v)),
            select_count=_section(selection, "selection.count", int),
            mode=_section(data, "mode", str, "supervised"),
            status=_section(data, "status", str, "complete"),
            selections=_section(selection, "selection.history", lambda v: [Selection.from_dict(s) for s in v], []),
            ever_selected=_section(selection, "selection.ever_selected", keys_from_json, []),
            best_selection=_section(selection, "selection.best", keys_from_json, []),
            data=_section(data, "data", DataRecord.from_dict, DataRecord()),
            **later,
            cegate_version=_section(data, "cegate_version", str, "unknown"),
            created=_section(data, "created", str, ""),
            run_id=data.get("run_id"),
        )


LATER_SECTIONS: dict[str, Callable[[Any], Any]] = {
    "parameters": ParameterRecord.from_dict,
    "metrics": MetricsRecord.from_dict,
    "timing": TimingRecord.from_dict,
    "adaptation": AdaptationRecord.from_dict,
}
"""Sections a run records once training has ended (adaptation: once self-training starts): `{}` till then."""
_MISSING = object()


def _section(data: dict[str, Any], name: str, read: Callable[[Any], Any], default: Any = _MISSING) -> Any:
    """`read` of the field `name` of `data` (its last dotted part), its failure named."""
    key = name.rsplit(".", 1)[-1]
    if key not in data:
        if default is _MISSING:
            raise FieldTypeError(f"{name} is missing")
        return default
    try:
        return read(data[key])
    except FieldTypeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        raise FieldTypeError(f"{name} is damaged ({_reason(exc)})") from None


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldTypeError(f"{name} is not an object of fields")
    return value


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no field {exc.args[0]!r}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def write_manifest(run_dir: Path, manifest: RunManifest) -> None:
    path = Path(run_dir) / RUN_JSON
    with writing(path, "write the run record"):
        write_json_atomic(path, manifest.to_dict())


CONFIG_HEADER = "# The options of `cegate adapt` that made this run, defaults included.\n# Re-make it with: cegate adapt --config {path} -o NEW_RUN_FOLDER\n"


def write_run_config(run_dir: Path, config: dict[str, Any]) -> None:
    """RUN/config.yaml: `config` (option name -> value, as `cegate adapt --config` reads it), atomically."""
    path = Path(run_dir) / CONFIG_YAML
    text = CONFIG_HEADER.format(path=path) + yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True, default_flow_style=False)
    with writing(path, "write the run's configuration"):
        write_text_atomic(path, text)


REMAKE = "restore run.json from a copy of the run folder, or make the run again with `cegate adapt`"


def read_manifest(run_dir: Path) -> RunManifest:
    """run.json of `run_dir`, read through the one safe loader, every field's type and the toolbox's
    sizes checked (they decide allocations), or one RunFolderError naming the file and the field."""
    path = Path(run_dir) / RUN_JSON
    if not os.path.lexists(path):
        raise RunFolderError(stopped_overwrite_note(run_dir) or f"{run_dir} is not a cegate run folder (no {RUN_JSON}); create one with `cegate adapt`")
    try:
        data = read_json(path)
    except DocumentError as exc:
        raise RunFolderError(f"{exc}; {REMAKE}") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: holds a JSON {type(data).__name__}, not the object cegate writes; {REMAKE}")
    if data.get("format") != RUN_FORMAT:
        raise RunFolderError(f"{path}: format {data.get('format')!r} is not {RUN_FORMAT!r}; was it written by cegate?")
    try:
        manifest = RunManifest.from_dict(data)
    except FieldTypeError as exc:
        raise RunFolderError(f"{path}: {exc}; {REMAKE}") from None
    try:
        manifest.toolbox.check()  # its sizes are allocations
    except CegateError as exc:
        raise RunFolderError(f"{path}: toolbox: {exc}; {REMAKE}") from None
    return manifest
