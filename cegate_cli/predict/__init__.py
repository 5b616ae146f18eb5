"""Whole-scene prediction: windows and blending, the mask GeoTIFF, polygons, many files at once.

Everything here takes a model as a plain callable (normalised (B, C, h, w) -> logits
(B, K, h, w)), so the same code serves the trained run, tests and benchmarks.
"""

from cegate_cli.predict.engine import SceneResult, count_tiles, predict_scene
from cegate_cli.predict.tiling import Tile, TilePlan, plan_tiles
from cegate_cli.predict.writer import MaskWriter, RasterGrid

__all__ = ["MaskWriter", "RasterGrid", "SceneResult", "Tile", "TilePlan", "count_tiles", "plan_tiles", "predict_scene"]
