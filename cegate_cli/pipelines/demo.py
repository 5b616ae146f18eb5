"""`cegate demo`: the whole workflow offline, on generated scenes, in a few minutes on a laptop CPU.

It writes a labeled source domain and a shifted target domain of GeoTIFFs, adapts the embedded
`galileo-nano` backbone (`adapt`'s default) to the labeled source and then the unlabeled target
(what `adapt --target` does), maps the target scenes and scores them against held-out labels, so a
new user sees every output cegate makes before pointing it at their own data. `source_only` trains
on the source alone, which shows what the shift costs without adaptation (docs/demo.md has the
figures). `backbone="tiny"` adapts the small ViT that was pretrained on these very scene
classes: its scores say more about its pretraining than about adaptation, which is why the demo
adapts `galileo-nano` by default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from cegate_cli.data.synthetic import DemoDataset, make_demo_dataset
from cegate_cli.errors import OutputExistsError
from cegate_cli.infra.progress import phase
from cegate_cli.options.demo import DemoOptions
from cegate_cli.options.train import TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, AdaptResult, adapt
from cegate_cli.pipelines.inference import Evaluation, MapOptions, evaluate_run, predict_run
from cegate_cli.predict import BatchProgress, BatchSummary, VectorOptions
from cegate_cli.train.reporter import TrainReporter


@dataclass
class DemoResult:
    data: DemoDataset
    adapted: AdaptResult
    predictions: BatchSummary
    evaluation: Evaluation
    predictions_dir: Path
    """Where the masks and polygons of the target scenes are."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each part: data, adapt, predict, evaluate, and the total."""


def demo_train_config(options: DemoOptions) -> TrainConfig:
    return TrainConfig(
        steps=options.steps,
        batch_size=8,
        crop=64,
        lr=2e-3,
        warmup_steps=min(20, options.steps // 10),
        seed=options.seed,
        device=options.device,
        val_every=max(1, options.steps // 5),
        val_crops=32,
        save_every=max(1, options.steps // 5),
        fisher_samples=16,
        select="0.25",
        reselect_every=0,
        # The demo's four generated classes are balanced; its measured figures
        # (docs/benchmarks.md, docs/demo.md) were taken with plain cross-entropy, random crops, the
        # unet head and the plain Fisher rule, without calibration.
        loss="ce",
        rare_crops=1,
        decoder="unet",
        selection="fisher",
        calibrate=False,
    )


def check_demo_root(root: Path, *, overwrite: bool) -> None:
    """Refuse a demo folder that is a file, or holds something, unless `overwrite`.

    Called by the CLI before it announces anything, so a second `cegate demo DIR` is refused
    before a word about generating data (and by `run_demo`, before any data is generated).
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OutputExistsError(f"{root}: is a file, not a folder; choose a folder for the demo")
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise OutputExistsError(f"{root} already exists; choose another folder or add --overwrite")


def run_demo(
    options: DemoOptions,
    reporter: TrainReporter | None = None,
    progress: BatchProgress | None = None,
) -> DemoResult:
    root = Path(options.root)
    check_demo_root(root, overwrite=options.overwrite)
    clock = _Clock()
    with phase(reporter, f"generating a labeled source and a shifted target domain in {root / 'data'}"):
        data = make_demo_dataset(root / "data", size=options.scene_size, seed=options.seed)
    clock.lap("data")
    adapted = adapt(
        AdaptOptions(
            source=data.source_dir,
            out=root / "run",
            backbone=options.backbone,
            train=demo_train_config(options),
            overwrite=True,
            target=None if options.source_only else data.target_dir,
        ),
        reporter,
    )
    clock.lap("adapt")
    map_options = MapOptions(tile=256, overlap=32, batch_size=4, device=options.device)
    predictions_dir = root / "predictions"
    predictions = predict_run(
        adapted.run_dir,
        [data.target_dir / "images"],
        predictions_dir,
        options=map_options,
        vectors=VectorOptions(fmt="geojson"),
        overwrite=True,
        progress=progress,
    )
    clock.lap("predict")
    with phase(reporter, "scoring the target maps against the held-out labels"):
        evaluation, _ = evaluate_run(adapted.run_dir, data.target_labels_dir, options=map_options)
    clock.lap("evaluate")
    return DemoResult(data, adapted, predictions, evaluation, predictions_dir, clock.seconds())


class _Clock:
    """Seconds between laps, for DemoResult.seconds."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 3)
        self.last = now

    def seconds(self) -> dict[str, float]:
        return {**self.laps, "total": round(self.last - self.started, 3)}
