"""`cegate demo`: generate scenes, adapt the embedded backbone, map and score the target domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cegate_cli.commands.console import stdout
from cegate_cli.commands.feedback import Feedback, QuietOpt, ThreadsOpt, VerboseOpt
from cegate_cli.commands.options import DeviceOpt, JsonOpt
from cegate_cli.options.demo import DemoOptions


def register(app: typer.Typer) -> None:
    @app.command(name="demo")
    def demo_command(
        folder: Annotated[Path, typer.Argument(help="Where to write the demo data, run and maps.")] = DemoOptions.root,
        steps: Annotated[int, typer.Option("--steps", help="Training steps (fewer = faster, worse).")] = DemoOptions.steps,
        seed: Annotated[int, typer.Option("--seed", help="Seed for the scenes and training.")] = DemoOptions.seed,
        device: DeviceOpt = DemoOptions.device,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing demo folder.")] = DemoOptions.overwrite,
        source_only: Annotated[
            bool, typer.Option("--source-only", help="Train on the labeled source alone (no adaptation to the target): shows what the shift costs.")
        ] = DemoOptions.source_only,
        backbone: Annotated[
            str, typer.Option("--backbone", help="Backbone to adapt (offline ones: tiny, galileo-nano).", show_default=False)
        ] = DemoOptions.backbone,
        threads: ThreadsOpt = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Run the whole workflow offline on generated GeoTIFF scenes (a few minutes on a CPU)."""
        from cegate_cli.pipelines.demo import check_demo_root, run_demo
        from cegate_cli.pipelines.results import demo_result

        feedback = Feedback.from_flags(quiet, verbose)
        check_demo_root(folder, overwrite=overwrite)  # refuse an existing folder before announcing anything
        feedback.threads(threads)
        reporter = feedback.train_reporter()
        try:
            with feedback.batch_progress() as progress:
                options = DemoOptions(root=folder, steps=steps, seed=seed, overwrite=overwrite, device=device, source_only=source_only, backbone=backbone)
                result = run_demo(options, reporter, progress)
        finally:
            reporter.finish()
        if as_json:
            stdout.print_json(json.dumps(demo_result(result)))
            return
        data, run = result.data, result.adapted
        report = result.evaluation.matrix
        stdout.print("cegate demo made:")
        stdout.print(f"  labeled source scenes   {data.source_dir}  (images/, masks/, classes.yaml)")
        stdout.print(f"  unlabeled target scenes {data.target_dir}  (another sensor look, 15 m pixels)")
        stdout.print(f"  held-out target labels  {data.target_labels_dir}")
        stdout.print(f"  run folder              {run.run_dir}  (run.json, adapter.safetensors: {_size(run.run_dir / 'adapter.safetensors')})")
        stdout.print(f"  masks and polygons      {result.predictions_dir}  ({len(result.predictions.done)} scenes: *.mask.tif, *.geojson)")
        selected = ", ".join(f"{k}@{l}" for k, l in run.manifest.final_selection)
        stdout.print(f"modules selected by Fisher score: {selected}")
        source_val = run.manifest.saved_val_miou
        how = "labeled source only (--source-only)" if source_only else "labeled source + unlabeled target (self-training)"
        stdout.print(f"trained on {how}")
        scores = f"target mIoU {report.miou():.3f} (overall accuracy {report.overall_accuracy():.3f})"
        stdout.print(f"source validation mIoU {source_val:.3f}; {scores}" if source_val is not None else scores)
        if source_only:
            stdout.print("without --source-only the demo also adapts to the unlabeled target scenes (adapt --target)")
        stdout.print(f"took {_clock(result.seconds['total'])} (adapt {_clock(result.seconds['adapt'])})")
        stdout.print(f"next: cegate inspect {run.run_dir}   (open the masks in QGIS: {result.predictions_dir})")


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.exists() else "missing"
