"""How `predict` and `evaluate` map scenes with a run (tiles, batch, device, extra outputs).

Kept apart from `cegate_cli.pipelines.inference` (which loads torch) so the command line can show these
defaults in `--help`, and pass them on unchanged, without loading the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from cegate_cli.infra.option_fields import option
from cegate_cli.infra.shared_help import DEVICE_HELP, OFFLINE_HELP, TOKEN_HELP

WEIGHTS = ("best", "last")
"""Which trained weights map: the best validation step's (adapter.safetensors) or the last step's."""


@dataclass(frozen=True)
class MapOptions:
    tile: int = option(512, help="Tile size in pixels (rounded up to the patch size).", flag="--tile")
    overlap: int = option(64, help="Overlap between tiles in pixels (blended smoothly).", flag="--overlap")
    batch_size: int = option(4, help="Tiles per forward pass.", flag="--batch-size")
    device: str = option("auto", help=DEVICE_HELP, flag="--device")
    outputs: tuple[str, ...] = ()
    """Optional rasters to write beside each mask, by name (predict/outputs.py: "confidence",
    "probabilities"); the mask itself is always written."""
    weights: str = option("best", help="best (validation) or last.", flag="--weights")
    offline: bool | None = option(None, help=OFFLINE_HELP, flag="--offline")
    token: str | None = option(None, help=TOKEN_HELP, flag="--token")

    def check(self) -> None:
        """Refuse values no mapping can use, before the run is loaded; every message names the flag."""
        from cegate_cli.errors import InputError
        from cegate_cli.infra.capacity import check_pass
        from cegate_cli.predict.outputs import switched_outputs

        names = [output.name for output in switched_outputs()]
        unknown = [name for name in self.outputs if name not in names]
        if unknown:
            raise InputError(f"output {unknown[0]!r}: choose from {', '.join(names)}")
        if self.weights not in WEIGHTS:
            raise InputError(f"--weights {self.weights!r}: choose {' or '.join(WEIGHTS)} (default {MapOptions.weights})")
        if self.tile < 1:
            raise InputError(f"--tile {self.tile}: must be at least 1 pixel (default {MapOptions.tile})")
        if not 0 <= self.overlap < self.tile:
            raise InputError(f"--overlap {self.overlap}: must be 0 or more and below --tile {self.tile} (default {MapOptions.overlap})")
        if self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size}: must be at least 1 (default {MapOptions.batch_size})")
        check_pass(side=self.tile, side_flag="--tile", batch=self.batch_size, batch_flag="--batch-size", unit="tile")
