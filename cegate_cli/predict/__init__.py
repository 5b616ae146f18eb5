"""Whole-scene prediction: windows and blending, the mask GeoTIFF, polygons, many files at once.

Everything here takes a model as a plain callable (normalised (B, C, h, w) -> logits
(B, K, h, w)), so the same code serves the trained run, tests and benchmarks. What each scene's
outputs are, and the options that ask for them, are declared in outputs.py.

The names below are imported on first use, so outputs.py loads without torch (the command line
lists the outputs without the model stack).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchProgress": "cegate_cli.predict.batch",
    "BatchSummary": "cegate_cli.predict.batch",
    "FileOutcome": "cegate_cli.predict.batch",
    "OutputPaths": "cegate_cli.predict.batch",
    "PredictOptions": "cegate_cli.predict.batch",
    "VectorOptions": "cegate_cli.predict.batch",
    "expand_inputs": "cegate_cli.predict.inputs",
    "output_paths": "cegate_cli.predict.batch",
    "predict_many": "cegate_cli.predict.batch",
    "SceneResult": "cegate_cli.predict.engine",
    "count_tiles": "cegate_cli.predict.engine",
    "predict_scene": "cegate_cli.predict.engine",
    "Tile": "cegate_cli.predict.tiling",
    "TilePlan": "cegate_cli.predict.tiling",
    "plan_tiles": "cegate_cli.predict.tiling",
    "VectorResult": "cegate_cli.predict.vectorize",
    "vectorize_mask": "cegate_cli.predict.vectorize",
    "MaskWriter": "cegate_cli.predict.writer",
    "RasterGrid": "cegate_cli.predict.writer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
