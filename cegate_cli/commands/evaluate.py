"""`cegate evaluate`: predict labeled images exactly as `predict` does and score them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cegate_cli.commands.console import stdout
from cegate_cli.commands.feedback import Feedback, QuietOpt, ThreadsOpt, VerboseOpt, main_progress
from cegate_cli.commands.options import BatchOpt, DeviceOpt, JsonOpt, OfflineOpt, OverlapOpt, RunArg, TileOpt, TokenOpt, WeightsOpt, offline_flag
from cegate_cli.predict.map_options import MapOptions


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def confusion_table(report: dict[str, Any], ids: list[int]) -> Table:
    """Pixels per (label, prediction) pair of the classes shown: where each class's errors go."""
    names = {row["id"]: row["name"] for row in report["classes"]}
    matrix = report["matrix"]
    table = Table(title="confusion matrix (pixels; rows: label, columns: predicted)", box=box.SIMPLE_HEAD)
    table.add_column("label \\ predicted", justify="left")
    for cid in ids:
        table.add_column(escape(names[cid]), justify="right")
    for true_id in ids:
        table.add_row(escape(names[true_id]), *(f"{matrix[true_id][pred_id]:,}" for pred_id in ids))
    return table


def register(app: typer.Typer) -> None:
    @app.command(name="evaluate")
    def evaluate_command(
        run: RunArg,
        labeled: Annotated[Path, typer.Argument(help="Labeled folder: images/ and masks/ with matching names.", show_default=False)],
        tile: TileOpt = MapOptions.tile,
        overlap: OverlapOpt = MapOptions.overlap,
        batch_size: BatchOpt = MapOptions.batch_size,
        weights: WeightsOpt = MapOptions.weights,
        device: DeviceOpt = MapOptions.device,
        offline: OfflineOpt = False,
        token: TokenOpt = None,
        keep_masks: Annotated[Optional[Path], typer.Option("--keep-masks", help="Also keep the predicted masks in this folder.")] = None,
        as_json: JsonOpt = False,
        threads: ThreadsOpt = None,
        quiet: QuietOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Per-class IoU, mIoU, overall accuracy and F1 of a run on a labeled folder, and its confusion matrix."""
        feedback = Feedback.from_flags(quiet, verbose)
        options = MapOptions(tile=tile, overlap=overlap, batch_size=batch_size, device=device, weights=weights, offline=offline_flag(offline), token=token)
        options.check()  # a mistyped value is answered before torch loads (seconds)

        from cegate_cli.infra.distributed import is_main
        from cegate_cli.pipelines.inference import evaluate_run

        feedback.threads(threads)
        with main_progress(feedback) as progress:
            evaluation, loaded = evaluate_run(run, labeled, options=options, progress=progress, keep_masks=keep_masks)
        if not is_main():  # under torchrun rank 0 prints the report of all images; all exit alike
            if evaluation.failed:
                raise typer.Exit(code=1)
            return
        report = evaluation.to_dict(loaded.manifest.classes)
        if as_json:
            stdout.print_json(json.dumps(report))
        else:
            table = Table(title=f"{run} on {labeled}", box=box.SIMPLE_HEAD)
            for column in ("id", "class", "IoU", "F1", "precision", "recall", "pixels"):
                table.add_column(column, justify="left" if column == "class" else "right")
            present = {c.id for c in loaded.manifest.classes.classes}
            shown = [row for row in report["classes"] if row["id"] in present or row["pixels"]]
            for row in shown:
                table.add_row(str(row["id"]), row["name"], _fmt(row["iou"]), _fmt(row["f1"]), _fmt(row["precision"]), _fmt(row["recall"]), f"{row['pixels']:,}")
            stdout.print(table)
            stdout.print(confusion_table(report, [row["id"] for row in shown]))
            stdout.print(f"mIoU {_fmt(report['miou'])}   overall accuracy {_fmt(report['overall_accuracy'])}   pixels {report['pixels']:,}")
        for failure in evaluation.failed:
            feedback.warn(f"Error: {failure}")
        if evaluation.failed:
            raise typer.Exit(code=1)
