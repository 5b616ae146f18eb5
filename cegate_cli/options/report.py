"""What `cegate report` puts on the page besides the run folder itself.

Kept apart from `cegate_cli.reporting.html_report` (which loads the raster and model stack) so the command
line can show these defaults in `--help` without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cegate_cli.errors import InputError

if TYPE_CHECKING:
    from cegate_cli.predict.map_options import MapOptions


@dataclass(frozen=True)
class ReportOptions:
    """What goes into the page besides the run folder itself."""

    scenes: tuple[str | Path, ...] = ()
    """Scenes to preview, as `predict` takes them, or a labeled folder (images/ + masks/)."""
    masks: Path | None = None
    """Masks made by `cegate predict` for those scenes (<name>.mask.tif); missing ones are predicted."""
    evaluation: Path | None = None
    """The output of `cegate evaluate --json` for this run: per-class IoU and the confusion matrix."""
    max_scenes: int = 3
    preview_size: int = 360
    """Longer side of each preview picture, in pixels."""
    map_options: MapOptions | None = field(default=None)
    """How scenes without a given mask are predicted (None: `predict`'s defaults)."""

    def check(self) -> None:
        if self.max_scenes < 1:
            raise InputError(f"--max-scenes {self.max_scenes}: must be at least 1")
        if not 32 <= self.preview_size <= 2048:
            raise InputError(f"--preview-size {self.preview_size}: choose 32 to 2048 pixels")
        if self.masks is not None and not self.scenes:
            raise InputError(f"--masks {self.masks}: name the scenes they belong to with --scenes")
