"""The CrossEarth-Gate toolbox: one sub-package per module kind (lora: spatial, adapter: semantic,
earth: frequency), each registering itself in kinds.py; attach.py puts them into a backbone.

The names below are imported on first use, so `cegate_cli.toolbox.kinds` and each kind's
registration load without torch (the command line lists the kinds without the model stack).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KINDS": "cegate_cli.toolbox.module_key",
    "KIND_LABELS": "cegate_cli.toolbox.module_key",
    "ModuleKey": "cegate_cli.toolbox.module_key",
    "ToolboxConfig": "cegate_cli.toolbox.config",
    "parse_kinds": "cegate_cli.toolbox.kinds",
    "register_kind": "cegate_cli.toolbox.kinds",
    "BlockSite": "cegate_cli.toolbox.base",
    "ToolboxModule": "cegate_cli.toolbox.base",
    "Toolbox": "cegate_cli.toolbox.attach",
    "attach_toolbox": "cegate_cli.toolbox.attach",
    "LoRA": "cegate_cli.toolbox.lora.layer",
    "LoRAQKV": "cegate_cli.toolbox.lora.layer",
    "LoRAQV": "cegate_cli.toolbox.lora.layer",
    "MLPAdapter": "cegate_cli.toolbox.adapter.layer",
    "EarthAdapter": "cegate_cli.toolbox.earth.layer",
    "split_frequencies": "cegate_cli.toolbox.earth.layer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
