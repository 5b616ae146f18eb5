"""The run folder: what `adapt` leaves and `predict`, `evaluate` and `inspect` read.

    run/
      run.json                  everything needed to rebuild the model and explain it
      config.yaml               the options of `cegate adapt` that made it (`--config` re-makes the run)
      adapter.safetensors       trained weights only (best validation step), never the backbone
      adapter_last.safetensors  the same at the last step
      state/trainer.safetensors what --resume needs: tensors ...
      state/trainer.json        ... and the rest (cegate_cli.train.state; never a pickle)
      .cegate.lock              held by the one `adapt` writing the folder (cegate_cli.runlock)

Every file is written to a temporary name and renamed, so an interrupted run never leaves a
half-written file under a final name. run.json and both adapter files carry the same random
run id, so weights copied in from another run are refused instead of silently used.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cegate_cli import __version__, runlock
from cegate_cli.atomic import atomic_path, write_json_atomic, write_text_atomic, writing
from cegate_cli.bands import BandChoice
from cegate_cli.classes import ClassTable
from cegate_cli.data.stats import BandStats
from cegate_cli.errors import OutputExistsError, RunFolderError
from cegate_cli.fisher import Selection
from cegate_cli.module_key import ModuleKey, keys_from_json, keys_to_json
from cegate_cli.toolbox import ToolboxConfig
from cegate_cli.train.config import TrainConfig
from cegate_cli.train.state import has_state, refuse_legacy

RUN_FORMAT = "cegate-run/1"
RUN_JSON = "run.json"
ADAPTER_BEST = "adapter.safetensors"
ADAPTER_LAST = "adapter_last.safetensors"
STATE_DIR = "state"
CONFIG_YAML = "config.yaml"


@dataclass
class RunManifest:
    """The contents of run.json. Nested sections that only report (metrics, timing) stay plain dicts."""

    backbone: dict[str, Any]
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
    data: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    adaptation: dict[str, Any] = field(default_factory=dict)
    """Self-training runs: target folder, run continued (--from), kept modules, settings, source
    normalisation, pseudo-label statistics over time. Empty for supervised runs."""
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
        """Validation mIoU of the weights in adapter.safetensors: the best step's, or the last
        step's where the run keeps its last step (self-training has no best step)."""
        best = self.metrics.get("best_val_miou")
        return best if best is not None else self.metrics.get("last_val_miou")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "run_id": self.run_id,
            "cegate_version": self.cegate_version,
            "created": self.created,
            "status": self.status,
            "mode": self.mode,
            "backbone": self.backbone,
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
            "data": self.data,
            "parameters": self.parameters,
            "metrics": self.metrics,
            "timing": self.timing,
            "adaptation": self.adaptation,
            "weights": {"best": ADAPTER_BEST, "last": ADAPTER_LAST},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunManifest:
        selection = data["selection"]
        return cls(
            backbone=data["backbone"],
            bands=BandChoice.from_dict(data["bands"]),
            normalization=BandStats.from_dict(data["normalization"]),
            classes=ClassTable.from_dict(data["classes"]),
            toolbox=ToolboxConfig.from_dict(data["toolbox"]),
            training=TrainConfig.from_dict(data["training"]),
            kinds=tuple(selection["kinds"]),
            select_count=int(selection["count"]),
            mode=data.get("mode", "supervised"),
            status=data.get("status", "complete"),
            selections=[Selection.from_dict(s) for s in selection.get("history", [])],
            ever_selected=keys_from_json(selection.get("ever_selected", [])),
            best_selection=keys_from_json(selection.get("best", [])),
            data=data.get("data", {}),
            parameters=data.get("parameters", {}),
            metrics=data.get("metrics", {}),
            timing=data.get("timing", {}),
            adaptation=data.get("adaptation", {}),
            cegate_version=data.get("cegate_version", "unknown"),
            created=data.get("created", ""),
            run_id=data.get("run_id"),
        )


def check_run_dir(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Everything about `-o` that can be checked without writing: run before the slow steps
    (backbone download, statistics) and, above all, before an old run is replaced."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} is a file, not a folder; choose another -o/--out for the run folder")
    runlock.probe(out)
    if resume:
        refuse_legacy(out / STATE_DIR)
        if not has_state(out / STATE_DIR):
            raise RunFolderError(f"{out}: no resume state ({STATE_DIR}/); start the run without --resume")
        return
    if _holds_files(out):
        if not overwrite:
            raise OutputExistsError(
                f"{out} already exists and is not empty; choose another -o/--out, add --resume to continue "
                "an interrupted run, or --overwrite to replace it"
            )
        if not ((out / RUN_JSON).exists() or (out / STATE_DIR).exists()):
            raise OutputExistsError(f"{out} is not empty and is not a cegate run folder; refusing to write into it")


def prepare_run_dir(out: Path, *, overwrite: bool, resume: bool) -> Path:
    """Lock the run folder for this process and, with --overwrite, empty the old run.

    Called once every option and input has been checked, right before the new run writes its
    first file: a mistake on the command line never costs the user the run they already have.
    The lock is held until `release_run_dir` (or the process ends); a second `adapt` into the
    same folder is refused while it is held.
    """
    out = Path(out)
    check_run_dir(out, overwrite=overwrite, resume=resume)
    with writing(out, "create the run folder"):
        out.mkdir(parents=True, exist_ok=True)
    runlock.hold(out)
    try:
        check_run_dir(out, overwrite=overwrite, resume=resume)  # again, now that nobody else can change it
        if not resume and ((out / RUN_JSON).exists() or (out / STATE_DIR).exists()):
            with writing(out, "set the old run aside"):
                aside = out / REPLACED_DIR
                shutil.rmtree(aside, ignore_errors=True)  # left by a run that was killed: it had replaced it
                aside.mkdir()
                for name in RUN_FILES:
                    if (out / name).exists():
                        (out / name).replace(aside / name)
    except BaseException:
        runlock.release(out)
        raise
    return out


def settle_replaced_run(out: Path, *, completed: bool, failed: bool) -> bool:
    """After `adapt --overwrite`: drop the old run once the new one is complete, or put the old run
    back when the new one failed (an error, a full disk). An interrupted new run (Ctrl-C) stays,
    resumable, with the old one kept in REPLACED_DIR until the resumed run completes.
    Returns True when the old run was put back."""
    out = Path(out)
    aside = out / REPLACED_DIR
    if not aside.is_dir():
        return False
    if completed:
        shutil.rmtree(aside, ignore_errors=True)
        return False
    if not failed:
        return False
    with writing(out, "put the old run back"):
        for name in RUN_FILES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        for entry in aside.iterdir():
            entry.replace(out / entry.name)
        aside.rmdir()
    return True


def release_run_dir(out: Path) -> None:
    """Let other processes write the folder again (the end of `adapt`, success or not)."""
    runlock.release(out)


REPLACED_DIR = ".replaced-run"
"""Where `--overwrite` keeps the old run until the new one is complete."""
RUN_FILES = (RUN_JSON, ADAPTER_BEST, ADAPTER_LAST, STATE_DIR, CONFIG_YAML)


def _holds_files(folder: Path) -> bool:
    """Anything in `folder` besides the lock file (which every run folder keeps)."""
    return folder.is_dir() and any(entry.name != runlock.LOCK_NAME for entry in folder.iterdir())


def state_dir(run_dir: Path) -> Path:
    """Where `adapt` keeps its resume state (cegate_cli.train.state)."""
    return Path(run_dir) / STATE_DIR


def write_manifest(run_dir: Path, manifest: RunManifest) -> None:
    path = Path(run_dir) / RUN_JSON
    with writing(path, "write the run record"):
        write_json_atomic(path, manifest.to_dict())


CONFIG_HEADER = (
    "# The options of `cegate adapt` that made this run, defaults included.\n"
    "# Re-make it with: cegate adapt --config {path} -o NEW_RUN_FOLDER\n"
)


def write_run_config(run_dir: Path, config: dict[str, Any]) -> None:
    """RUN/config.yaml: `config` (option name -> value, as `cegate adapt --config` reads it), atomically."""
    path = Path(run_dir) / CONFIG_YAML
    text = CONFIG_HEADER.format(path=path) + yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True, default_flow_style=False)
    with writing(path, "write the run's configuration"):
        write_text_atomic(path, text)


def read_manifest(run_dir: Path) -> RunManifest:
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise RunFolderError(f"{run_dir} is not a cegate run folder (no {RUN_JSON}); create one with `cegate adapt`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path}: cannot read ({exc})") from exc
    if data.get("format") != RUN_FORMAT:
        raise RunFolderError(f"{path}: format {data.get('format')!r} is not {RUN_FORMAT!r}; was it written by cegate?")
    try:
        return RunManifest.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFolderError(f"{path}: incomplete or damaged run.json ({exc!r})") from exc


def save_weights(path: Path, tensors: dict[str, torch.Tensor], run_id: str | None = None) -> None:
    """Write a run's trained weights atomically, stamped with the run's id (see `load_weights`)."""
    metadata = {"format": RUN_FORMAT, **({"run_id": run_id} if run_id else {})}
    then = "the training itself is saved: run the same command with --resume to write the weights"
    with writing(path, "write the trained weights", then):
        with atomic_path(path) as temporary:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(temporary), metadata=metadata)


def load_weights(path: Path, run_id: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of an adapter file; with `run_id`, only if the file belongs to that run."""
    if not path.is_file():
        raise RunFolderError(f"{path} is missing; the run did not finish (resume it with `cegate adapt ... --resume`)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            theirs = metadata.get("run_id")
            if run_id is not None and theirs != run_id:
                origin = f"run {theirs}" if theirs else "an unknown run"
                raise RunFolderError(
                    f"{path}: these weights belong to {origin}, not to this run ({run_id}, from {RUN_JSON}); "
                    "put this run's own adapter files back, or use the run folder the weights came from"
                )
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except RunFolderError:
        raise
    except (SafetensorError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunFolderError(
            f"{path}: not a complete safetensors file ({reason}); it is damaged or was cut short: "
            "copy it again from where the run was made, or train again with `cegate adapt`"
        ) from None
