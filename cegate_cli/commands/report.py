"""`cegate report`: a run as one self-contained HTML page (curves, selection, IoU, previews)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cegate_cli.commands.console import stderr, stdout
from cegate_cli.commands.feedback import main_progress
from cegate_cli.commands.options import DeviceOpt, OfflineOpt, RunArg, TokenOpt, WeightsOpt, offline_flag
from cegate_cli.options.report import ReportOptions
from cegate_cli.predict.map_options import MapOptions


def register(app: typer.Typer) -> None:
    @app.command(name="report")
    def report_command(
        run: RunArg,
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The HTML file to write (default: RUN/report.html).", show_default=False)] = None,
        scenes: Annotated[
            Optional[list[str]],
            typer.Option(
                "--scenes",
                help="Scenes to preview: files, folders, globs or STAC items as predict takes them, or a labeled "
                "folder (images/ + masks/) to show labels too. Repeatable.",
                show_default=False,
            ),
        ] = None,
        masks: Annotated[
            Optional[Path],
            typer.Option(
                "--masks", help="Masks already made by `cegate predict` for those scenes (its -o folder); scenes without one are predicted.", show_default=False
            ),
        ] = None,
        evaluation: Annotated[
            Optional[Path], typer.Option("--evaluation", help="Per-class IoU from `cegate evaluate RUN FOLDER --json > FILE`.", show_default=False)
        ] = None,
        max_scenes: Annotated[int, typer.Option("--max-scenes", help="Preview at most this many scenes.")] = ReportOptions.max_scenes,
        preview_size: Annotated[int, typer.Option("--preview-size", help="Longer side of each preview, in pixels.")] = ReportOptions.preview_size,
        weights: WeightsOpt = MapOptions.weights,
        device: DeviceOpt = MapOptions.device,
        offline: OfflineOpt = False,
        token: TokenOpt = None,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace a file at --out that is not a report cegate wrote (a report it wrote is always replaced).")
        ] = False,
    ) -> None:
        """Write a run as one HTML page that opens offline: curves, module selection, IoU, class legend, scene previews."""
        from cegate_cli.reporting.html_report import write_report

        map_options = None
        if scenes:
            map_options = MapOptions(weights=weights, device=device, offline=offline_flag(offline), token=token)
        options = ReportOptions(
            scenes=tuple(scenes or ()), masks=masks, evaluation=evaluation, max_scenes=max_scenes, preview_size=preview_size, map_options=map_options
        )
        with main_progress() as progress:
            result = write_report(run, out, options, overwrite=overwrite, progress=progress)
        for problem in result.problems:
            stderr.print(f"warning: not shown: {problem}", markup=False, highlight=False)
        stdout.print(str(result.path), markup=False, highlight=False, soft_wrap=True)
