"""Whole-scene prediction: windows and blending, the mask GeoTIFF, polygons, many files at once.

Everything here takes a model as a plain callable (normalised (B, C, h, w) -> logits
(B, K, h, w)), so the same code serves the trained run, tests and benchmarks.
"""

from cegate_cli.predict.batch import (
    BatchProgress,
    BatchSummary,
    FileOutcome,
    OutputPaths,
    PredictOptions,
    VectorOptions,
    expand_inputs,
    output_paths,
    predict_many,
)
from cegate_cli.predict.engine import SceneResult, count_tiles, predict_scene
from cegate_cli.predict.tiling import Tile, TilePlan, plan_tiles
from cegate_cli.predict.vectorize import VectorResult, vectorize_mask
from cegate_cli.predict.writer import MaskWriter, RasterGrid

__all__ = [
    "BatchProgress",
    "BatchSummary",
    "FileOutcome",
    "MaskWriter",
    "OutputPaths",
    "PredictOptions",
    "RasterGrid",
    "SceneResult",
    "Tile",
    "TilePlan",
    "VectorOptions",
    "VectorResult",
    "count_tiles",
    "expand_inputs",
    "output_paths",
    "plan_tiles",
    "predict_many",
    "predict_scene",
    "vectorize_mask",
]
