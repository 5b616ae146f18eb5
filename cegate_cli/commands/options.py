"""Option aliases shared by several commands, declared once (the huggingface_hub CLI pattern)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help="Hub revision (branch, tag or commit) to pin.")]
TokenOpt = Annotated[
    Optional[str], typer.Option("--token", envvar="HF_TOKEN", show_envvar=False, help="Hub token for gated or private repos (default: HF_TOKEN).")
]
OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="Use only the local Hub cache (same as HF_HUB_OFFLINE=1).")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
TileOpt = Annotated[int, typer.Option("--tile", help="Tile size in pixels (rounded up to the patch size).")]
OverlapOpt = Annotated[int, typer.Option("--overlap", help="Overlap between tiles in pixels (blended smoothly).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Tiles per forward pass.")]
WeightsOpt = Annotated[str, typer.Option("--weights", help="best (validation) or last.")]
RunArg = Annotated[Path, typer.Argument(help="A run folder written by `cegate adapt`.", show_default=False)]


def offline_flag(value: bool) -> bool | None:
    """--offline forces offline; without it huggingface_hub's own HF_HUB_OFFLINE decides."""
    return True if value else None
