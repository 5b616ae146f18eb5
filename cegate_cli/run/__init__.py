"""The run folder: what `adapt` leaves and `predict`, `evaluate` and `inspect` read; its one home.

    layout.py    the names in the folder (run.json, config.yaml, adapter files, state/, lock)
    manifest.py  run.json (`RunManifest`) and config.yaml, written and read
    sections.py  run.json's own sections (backbone, data, parameters, metrics, timing, adaptation)
    folder.py    the folder as a place: checked, locked for one writer, the old run set aside
    weights.py   which tensors a run holds and under which names: written, read back, applied
    state.py     the resume state of `adapt` (state/): safetensors + JSON, written and read as one pair
    load.py      a trained model rebuilt from a run (predict, evaluate, inspect, adapt --from)

Callers import from here: `from cegate_cli.run import read_manifest, load_run`.

The names of load.py are imported on first use: it needs the backbone families (timm, the Hub
client), which commands that only read run.json (`inspect`, the reports) never load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cegate_cli.run.folder import check_run_dir, prepare_run_dir, release_run_dir, settle_replaced_run, state_dir
from cegate_cli.run.layout import (
    ADAPTER_BEST,
    ADAPTER_LAST,
    CONFIG_YAML,
    REPLACED_DIR,
    RUN_FILES,
    RUN_FORMAT,
    RUN_JSON,
    STATE_DIR,
)
from cegate_cli.run.manifest import CONFIG_HEADER, RunManifest, read_manifest, write_manifest, write_run_config
from cegate_cli.run.sections import (
    AdaptationRecord,
    BackboneRecord,
    BandCopy,
    DataRecord,
    MetricsRecord,
    ParameterRecord,
    TimingRecord,
    calibrated,
    saved_val_miou,
)
from cegate_cli.run.weights import (
    backbone_parameter_count,
    load_weights,
    parameter_summary,
    restore_weights,
    run_tensors,
    save_weights,
    weights_path,
)

if TYPE_CHECKING:
    from cegate_cli.run.load import LoadedRun, load_run, resolve_device, source_for_run

_FROM_LOAD = ("LoadedRun", "load_run", "resolve_device", "source_for_run")

__all__ = [
    "AdaptationRecord",
    "BackboneRecord",
    "BandCopy",
    "DataRecord",
    "MetricsRecord",
    "ParameterRecord",
    "TimingRecord",
    "ADAPTER_BEST",
    "ADAPTER_LAST",
    "CONFIG_HEADER",
    "CONFIG_YAML",
    "REPLACED_DIR",
    "RUN_FILES",
    "RUN_FORMAT",
    "RUN_JSON",
    "STATE_DIR",
    "RunManifest",
    "backbone_parameter_count",
    "calibrated",
    "check_run_dir",
    "load_weights",
    "parameter_summary",
    "prepare_run_dir",
    "read_manifest",
    "release_run_dir",
    "restore_weights",
    "run_tensors",
    "save_weights",
    "saved_val_miou",
    "settle_replaced_run",
    "state_dir",
    "weights_path",
    "write_manifest",
    "write_run_config",
    "LoadedRun",
    "load_run",
    "resolve_device",
    "source_for_run",  # _FROM_LOAD
]


def __getattr__(name: str) -> Any:
    """`load_run` and its companions, imported when first asked for (see the module docstring)."""
    if name in _FROM_LOAD:
        from cegate_cli.run import load

        return getattr(load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
