"""How `predict` and `evaluate` map scenes with a run (tiles, batch, device, extra outputs).

Kept apart from `cegate_cli.inference` (which loads torch) so the command line can show these
defaults in `--help`, and pass them on unchanged, without loading the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MapOptions:
    tile: int = 512
    overlap: int = 64
    batch_size: int = 4
    device: str = "auto"
    confidence: bool = False
    probabilities: bool = False
    weights: str = "best"
    offline: bool | None = None
    token: str | None = None
