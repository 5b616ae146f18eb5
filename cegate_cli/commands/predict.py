"""`cegate predict`: whole scenes of any size to georeferenced masks and polygons."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cegate_cli.commands.console import stdout
from cegate_cli.commands.feedback import Feedback, QuietOpt, ThreadsOpt, VerboseOpt, main_progress
from cegate_cli.commands.options import (
    BatchOpt,
    DeviceOpt,
    JsonOpt,
    OfflineOpt,
    OverlapOpt,
    OverwriteOpt,
    RunArg,
    TileOpt,
    TokenOpt,
    WeightsOpt,
    offline_flag,
)
from cegate_cli.commands.registered_flags import Flag, with_flags
from cegate_cli.infra.option_fields import help_of
from cegate_cli.predict.map_options import MapOptions
from cegate_cli.predict.outputs import NO_VECTOR, switched_outputs
from cegate_cli.predict.vector_options import VectorOptions


def output_switches() -> list[Flag]:
    """One switch per optional raster of predict/outputs.py (`--confidence`)."""
    return [Flag(output.flag, bool, output.name in MapOptions.outputs, output.help) for output in switched_outputs()]


def register(app: typer.Typer) -> None:
    def predict_command(
        run: RunArg,
        inputs: Annotated[list[str], typer.Argument(help="GeoTIFF files, STAC item .json files, folders or glob patterns.", show_default=False)],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.", show_default=False)],
        tile: TileOpt = MapOptions.tile,
        overlap: OverlapOpt = MapOptions.overlap,
        batch_size: BatchOpt = MapOptions.batch_size,
        vector: Annotated[str, typer.Option("--vector", help=help_of(VectorOptions, "fmt"))] = VectorOptions.fmt or NO_VECTOR,
        min_area: Annotated[float, typer.Option("--min-area", help=help_of(VectorOptions, "min_area_m2"))] = VectorOptions.min_area_m2,
        simplify: Annotated[float, typer.Option("--simplify", help=help_of(VectorOptions, "simplify_m"))] = VectorOptions.simplify_m,
        vector_merge: Annotated[bool, typer.Option("--vector-merge", help=help_of(VectorOptions, "merge"))] = VectorOptions.merge,
        weights: WeightsOpt = MapOptions.weights,
        device: DeviceOpt = MapOptions.device,
        offline: OfflineOpt = False,
        token: TokenOpt = None,
        overwrite: OverwriteOpt = False,
        threads: ThreadsOpt = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
        verbose: VerboseOpt = False,
        **switches: Any,
    ) -> None:
        """Map scenes of any size into georeferenced masks (OUT/<stem>.mask.tif) and polygons."""
        feedback = Feedback.from_flags(quiet, verbose)

        written = tuple(o.name for o in switched_outputs() if switches[o.name])
        options = MapOptions(
            tile=tile, overlap=overlap, batch_size=batch_size, device=device, outputs=written, weights=weights, offline=offline_flag(offline), token=token
        )
        vectors = VectorOptions(
            fmt=None if vector == NO_VECTOR else vector,
            min_area_m2=min_area,
            simplify_m=simplify,
            merge=vector_merge,  # type: ignore[arg-type]
        )
        options.check()  # a mistyped value is answered before torch loads (seconds)
        vectors.check()

        from cegate_cli.infra.distributed import is_main
        from cegate_cli.pipelines.inference import predict_run
        from cegate_cli.pipelines.results import batch_result
        from cegate_cli.run import read_manifest

        feedback.threads(threads)
        started = time.perf_counter()
        with main_progress(feedback) as progress:
            summary = predict_run(run, inputs, out, options=options, vectors=vectors, overwrite=overwrite, progress=progress)
        if not is_main():  # under torchrun rank 0 prints the summary of all scenes; all exit alike
            if not summary.ok:
                raise typer.Exit(code=1)
            return
        if as_json:
            result = {"run": str(run), "out_dir": str(out), **batch_result(summary, read_manifest(run).classes, time.perf_counter() - started)}
            stdout.print_json(json.dumps(result))
        from cegate_cli.data.folder import grouped

        scenes_by_warning: dict[str, list[str]] = {}  # one line for many scenes with the same problem
        scenes_by_note: dict[str, list[str]] = {}  # and for many with the same note (no problem: not a warning)
        for outcome in summary.done:
            if not as_json:
                stdout.print(" ".join(str(p) for p in outcome.outputs.all()), markup=False)
            scene = outcome.scene
            if scene is not None:
                name = outcome.source.name
                for said, by_what in ((getattr(scene, "warnings", ()), scenes_by_warning), (getattr(scene, "notes", ()), scenes_by_note)):
                    for text in said or ():
                        by_what.setdefault(text.removeprefix(f"{name}: "), []).append(name)
        for what, names in scenes_by_warning.items():
            for line in grouped(names, what):
                feedback.warn(f"warning: {line}")
        for what, names in scenes_by_note.items():
            for line in grouped(names, what):
                feedback.say(f"note: {line}")
        merged = summary.merged
        if merged is not None and merged.layer is not None:
            if not as_json:
                stdout.print(str(merged.path), markup=False)
            if merged.layer.note:
                feedback.say(merged.layer.note)
        feedback.say(f"{len(summary.done)} done, {len(summary.skipped)} skipped, {len(summary.failed)} failed")
        if merged is not None and merged.status == "skipped":
            feedback.say(str(merged.message))
        if summary.failed:
            for outcome in summary.failed:
                feedback.warn(f"Error: {outcome.message}")  # the message names the file
        if merged is not None and merged.status == "failed":
            feedback.warn(f"Error: {merged.message}")
        if not summary.ok:
            raise typer.Exit(code=1)

    app.command(name="predict")(with_flags(predict_command, output_switches(), after="vector_merge"))
