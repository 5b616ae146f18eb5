"""Labeled source folder -> run folder -> maps, with the Python API (the CLI calls the same functions)."""

from __future__ import annotations

import sys
from pathlib import Path

from cegate_cli.data.synthetic import make_demo_dataset
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.pipelines.inference import MapOptions, evaluate_run, predict_run
from cegate_cli.predict import VectorOptions
from cegate_cli.reporting.report import run_report


def main(work: Path) -> None:
    data = make_demo_dataset(work / "data")
    result = adapt(
        AdaptOptions(
            source=data.source_dir,
            out=work / "run",
            backbone="tiny",
            bands="blue,green,red,nir",
            train=TrainConfig(steps=200, batch_size=8, crop=64, val_every=50),
            overwrite=True,
        )
    )
    report = run_report(result.run_dir)
    chosen = [f"{cell['kind']}@{cell['layer']}" for cell in report["scores"] if cell["selected"]]
    print("selected modules:", ", ".join(chosen))

    options = MapOptions(tile=256, overlap=32)
    summary = predict_run(
        result.run_dir, [data.target_dir / "images"], work / "maps", options=options, vectors=VectorOptions(fmt="geojson", min_area_m2=2000.0), overwrite=True
    )
    for outcome in summary.done:
        print("wrote", *outcome.outputs.all())

    evaluation, _ = evaluate_run(result.run_dir, data.target_labels_dir, options=options)
    print(f"target mIoU {evaluation.matrix.miou():.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "cegate-example"))
