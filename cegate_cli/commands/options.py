"""Option aliases shared by several commands, declared once (the huggingface_hub CLI pattern)."""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cegate_cli.infra.option_fields import help_of
from cegate_cli.infra.shared_help import DEVICE_HELP, OFFLINE_HELP, REVISION_HELP, TOKEN_HELP
from cegate_cli.predict.map_options import MapOptions

RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help=REVISION_HELP)]
TokenOpt = Annotated[Optional[str], typer.Option("--token", envvar="HF_TOKEN", show_envvar=False, help=TOKEN_HELP)]
OfflineOpt = Annotated[bool, typer.Option("--offline", help=OFFLINE_HELP)]
DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
TileOpt = Annotated[int, typer.Option("--tile", help=help_of(MapOptions, "tile"))]
OverlapOpt = Annotated[int, typer.Option("--overlap", help=help_of(MapOptions, "overlap"))]
BatchOpt = Annotated[int, typer.Option("--batch-size", help=help_of(MapOptions, "batch_size"))]
WeightsOpt = Annotated[str, typer.Option("--weights", help=help_of(MapOptions, "weights"))]
RunArg = Annotated[Path, typer.Argument(help="A run folder written by `cegate adapt`.", show_default=False)]


def in_panel(alias: Any, panel: str) -> Any:
    """The `typer.Option` of `alias` (an `Annotated[type, typer.Option(...)]` of this module or
    feedback.py) listed under `--help` panel `panel`, for `Annotated[bool, in_panel(JsonOpt, "Output")]`.
    A copy, so the other commands keep theirs."""
    info = copy.copy(typing.get_args(alias)[1])
    info.rich_help_panel = panel
    return info


def offline_flag(value: bool) -> bool | None:
    """--offline forces offline; without it huggingface_hub's own HF_HUB_OFFLINE decides."""
    return True if value else None
