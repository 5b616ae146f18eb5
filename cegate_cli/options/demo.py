"""What `cegate demo` may be told: where to write, how long to train, which backbone.

Kept apart from `cegate_cli.pipelines.demo` (which loads torch) so the command line can show these
defaults in `--help`, and pass them on unchanged, without loading the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cegate_cli.options.adapt import AdaptOptions


@dataclass(frozen=True)
class DemoOptions:
    root: Path = Path("cegate-demo")
    steps: int = 300
    seed: int = 0
    scene_size: int = 256
    overwrite: bool = False
    device: str = "auto"
    source_only: bool = False
    backbone: str = AdaptOptions.backbone
    """The backbone adapted: `adapt`'s default. The scenes are 4-band reflectance (blue, green,
    red, nir, x 10,000) at 10 m (source) and 15 m (target), so Galileo reads them as it reads
    Sentinel-2 (its RGB and 10 m NIR groups and NDVI, the authors' normalisation)."""
