"""Benchmark domain adaptation on generated scenes with a real domain shift.

    python benchmarks/bench_adaptation.py --seeds 0 1 2 --out docs/adaptation.md

For every seed, `make_demo_dataset` writes a labeled source domain (10 m pixels), an unlabeled
target folder and a labeled held-out target folder (another sensor: other band gains and
offsets, a seasonal change of the vegetation and soil spectra, blur and noise instead of crisp
texture, 15 m pixels, another UTM zone). Then, all with the `tiny` backbone:

  source                    `adapt SOURCE`, target normalised with the source statistics
  source_tstats             the same run, target normalised with the target folder's statistics
  dacs_sstats               `adapt SOURCE --target TARGET --target-norm source`: self-training alone
  dacs                      `adapt SOURCE --target TARGET` (EMA teacher, ClassMix, target statistics)
  from                      `adapt --from <source-only run> --target TARGET` (teacher-student)
  from_sstats               the same with `--target-norm source`: target-only self-training alone
  oracle                    `adapt` on labeled target-domain scenes (other than the held-out ones):
                            what target labels would give, the ceiling for adaptation

Each run maps every held-out target scene with `predict_scene` (the product's whole-scene path)
and is scored against the held-out labels; the table gives mean and standard deviation of the
target mIoU over the seeds. The second row separates what normalisation alone gives from what
self-training adds. Timings are CPU timings on a shared machine: noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from report_block import measured_header, replace_block

# Each adapted row is compared seed by seed with the source-only run under the same normalisation.
BASELINE = {"dacs_sstats": "source", "from_sstats": "source", "dacs": "source_tstats", "from": "source_tstats", "oracle": "source_tstats"}
ROWS = (
    ("source", "source only, source statistics"),
    ("source_tstats", "source only, target statistics"),
    ("dacs_sstats", "source+target (DACS), source statistics"),
    ("dacs", "source+target (DACS), target statistics"),
    ("from_sstats", "--from the source-only run, target only, source statistics"),
    ("from", "--from the source-only run, target only, target statistics"),
    ("oracle", "reference: trained on labeled target scenes"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=256, help="scene side in pixels")
    parser.add_argument("--n-source", type=int, default=6)
    parser.add_argument("--n-target", type=int, default=4, help="unlabeled target scenes")
    parser.add_argument("--n-eval", type=int, default=4, help="held-out labeled target scenes")
    parser.add_argument("--steps", type=int, default=200, help="steps of the source-only and DACS runs")
    parser.add_argument("--from-steps", type=int, default=100, help="steps of the --from run")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--select", default="0.25")
    parser.add_argument("--confidence", type=float, default=0.968)
    parser.add_argument("--class-balance", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write the table to")
    parser.add_argument("--json", type=Path, default=None, help="also write every number as JSON")
    parser.add_argument("--rows", nargs="+", default=[key for key, _ in ROWS], choices=[key for key, _ in ROWS])
    return parser.parse_args(argv)


BOUNDARY_PX = 2  # "near a boundary": another class within this many pixels (Chebyshev distance)


def target_scores(model, eval_dir: Path, stats, bands, class_table, patch: int, work: Path) -> dict[str, float]:
    """mIoU over all held-out target scenes, mapped whole by `predict_scene`, and where the errors are:
    the error rate near class boundaries and inside class regions."""
    import numpy as np
    import rasterio

    from cegate_cli.data.bands import match_bands
    from cegate_cli.data.folder import discover_labeled
    from cegate_cli.data.metrics import ConfusionMatrix, evaluate_scene
    from cegate_cli.predict import predict_scene

    folder = discover_labeled(eval_dir)
    matrix = ConfusionMatrix(class_table.num_classes, class_table.ignore_index)
    work.mkdir(parents=True, exist_ok=True)
    counts = np.zeros((2, 2), dtype=np.int64)  # [near boundary, interior] x [pixels, errors]
    for pair in folder.pairs:
        mask = work / f"{pair.image.stem}.mask.tif"
        predict_scene(
            model,
            pair.image,
            mask,
            band_indexes=match_bands(bands, pair.image),
            stats=stats,
            class_table=class_table,
            tile=128,
            overlap=32,
            batch_size=4,
            multiple_of=patch,
        )
        evaluate_scene(mask, pair.mask, num_classes=class_table.num_classes, ignore_index=class_table.ignore_index, matrix=matrix)
        with rasterio.open(mask) as predicted, rasterio.open(pair.mask) as truth:
            pred, label = predicted.read(1), truth.read(1)
        labeled = (label != class_table.ignore_index) & (pred != 255)
        near = near_boundary(label, class_table.ignore_index, BOUNDARY_PX)
        wrong = (pred != label) & labeled
        for row, where in enumerate((near, ~near)):
            counts[row] += ((where & labeled).sum(), (where & wrong).sum())
    return {
        "target_miou": float(matrix.miou()),
        "error_near_boundary": float(counts[0, 1] / max(counts[0, 0], 1)),
        "error_interior": float(counts[1, 1] / max(counts[1, 0], 1)),
        "errors_share_near_boundary": float(counts[0, 1] / max(counts[:, 1].sum(), 1)),
    }


def near_boundary(label, ignore_index: int, radius: int):
    """True where another (labeled) class lies within `radius` pixels."""
    import numpy as np

    height, width = label.shape
    padded = np.pad(label, radius, mode="edge")
    near = np.zeros(label.shape, dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            other = padded[dy : dy + height, dx : dx + width]
            near |= (other != label) & (other != ignore_index)
    return near


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    from cegate_cli.data.synthetic import make_demo_dataset
    from cegate_cli.options.train import SelfTrainConfig, TrainConfig
    from cegate_cli.pipelines.adapt import AdaptOptions, adapt
    from cegate_cli.run import load_run
    from cegate_cli.train.target_data import discover_target, target_stats

    root = work / f"seed{seed}"
    data = make_demo_dataset(root / "data", n_source=args.n_source, n_target=args.n_target, size=args.size, seed=seed, n_target_eval=args.n_eval)
    train = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        seed=seed,
        select=args.select,
        warmup_steps=min(25, args.steps // 10),
        val_every=args.steps,
        val_crops=8,
        save_every=args.steps,
        fisher_samples=8,
        device="cpu",
    )
    self_training = SelfTrainConfig(confidence=args.confidence, class_balance=args.class_balance)
    results: dict[str, dict[str, float]] = {}

    def score(key: str, run_dir: Path, seconds: float, stats=None) -> None:
        loaded = load_run(run_dir, device="cpu")
        m = loaded.manifest
        scores = target_scores(
            loaded.model,
            data.target_labels_dir,
            stats or m.normalization,
            m.bands,
            m.classes,
            loaded.model.backbone.patch_size,
            root / "maps" / key,
        )
        results[key] = {**scores, "seconds": seconds}
        print(
            f"seed {seed}  {key:<14} target mIoU {scores['target_miou']:.4f}  error near boundaries "
            f"{scores['error_near_boundary']:.2%}, inside {scores['error_interior']:.2%}  ({seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    wanted = set(args.rows)
    source_run = root / "source_only"
    if wanted & {"source", "source_tstats", "from", "from_sstats"}:
        started = time.perf_counter()
        adapt(AdaptOptions(source=data.source_dir, out=source_run, backbone="tiny", train=train, overwrite=True))
        seconds = time.perf_counter() - started
        if "source" in wanted:
            score("source", source_run, seconds)
        if "source_tstats" in wanted:
            manifest = load_run(source_run, device="cpu").manifest
            stats = target_stats(discover_target(data.target_dir, manifest.bands), manifest.bands, seed)
            score("source_tstats", source_run, seconds, stats=stats)
    for key, norm in (("dacs_sstats", "source"), ("dacs", "target")):
        if key in wanted:
            started = time.perf_counter()
            adapt(
                AdaptOptions(
                    source=data.source_dir,
                    out=root / key,
                    backbone="tiny",
                    train=train,
                    target=data.target_dir,
                    self_training=replace(self_training, target_norm=norm),
                    overwrite=True,
                )
            )
            score(key, root / key, time.perf_counter() - started)
    for key, norm in (("from_sstats", "source"), ("from", "target")):
        if key in wanted:
            started = time.perf_counter()
            continued = replace(train, steps=args.from_steps, warmup_steps=0, save_every=args.from_steps, val_every=0)
            adapt(
                AdaptOptions(
                    source=None,
                    out=root / key,
                    train=continued,
                    target=data.target_dir,
                    from_run=source_run,
                    self_training=replace(self_training, target_norm=norm),
                    overwrite=True,
                )
            )
            score(key, root / key, time.perf_counter() - started)
    if "oracle" in wanted:
        labeled = make_labeled_target(root / "oracle_data", args.n_source, args.size, seed)
        started = time.perf_counter()
        adapt(AdaptOptions(source=labeled, out=root / "oracle", backbone="tiny", train=train, overwrite=True))
        score("oracle", root / "oracle", time.perf_counter() - started)
    return results


def make_labeled_target(folder: Path, count: int, size: int, seed: int) -> Path:
    """Labeled target-domain scenes for the oracle, from seeds no demo scene uses."""
    from cegate_cli.data.synthetic import classes_yaml, make_scene
    from cegate_cli.infra.atomic import write_text_atomic

    for i in range(count):
        name = f"target_oracle_{i:03d}.tif"
        make_scene(
            folder / "images" / name,
            folder / "masks" / name,
            size=(size, size if i % 3 != 2 else size * 3 // 4),
            domain="target",
            seed=10_000 * (seed + 1) + i,
            origin=(300000.0 + i * size * 25.0, 5100000.0),
        )
    write_text_atomic(folder / "classes.yaml", classes_yaml())
    return folder


def table(per_seed: dict[int, dict[str, dict[str, float]]], rows: list[str]) -> str:
    seeds = sorted(per_seed)
    lines = [
        "| method | target mIoU, mean ± std | "
        + " | ".join(f"seed {s}" for s in seeds)
        + f" | gain over source only, same statistics (paired) | pixel error within {BOUNDARY_PX} px of a class boundary / elsewhere"
        " | minutes per run |",
        "|---|---|" + "---|" * len(seeds) + "---|---|---|",
    ]
    for key, label in ROWS:
        if key not in rows:
            continue
        values = [per_seed[s][key]["target_miou"] for s in seeds if key in per_seed[s]]
        if not values:
            continue
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        minutes = statistics.mean(per_seed[s][key]["seconds"] for s in seeds if key in per_seed[s]) / 60
        near = statistics.mean(per_seed[s][key]["error_near_boundary"] for s in seeds if key in per_seed[s])
        inside = statistics.mean(per_seed[s][key]["error_interior"] for s in seeds if key in per_seed[s])
        gain = "-"
        base = BASELINE.get(key)
        paired = [per_seed[s][key]["target_miou"] - per_seed[s][base]["target_miou"] for s in seeds if key in per_seed[s] and base in per_seed[s]]
        if paired:
            gain = f"{statistics.mean(paired):+.3f} ± {statistics.stdev(paired) if len(paired) > 1 else 0.0:.3f}"
        lines.append(
            f"| {label} | {statistics.mean(values):.3f} ± {spread:.3f} | "
            + " | ".join(f"{v:.3f}" for v in values)
            + f" | {gain} | {near:.1%} / {inside:.2%} | {minutes:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cegate-bench-adapt-") as scratch:
        work = args.work or Path(scratch)
        per_seed = {seed: run_seed(seed, args, work) for seed in args.seeds}
    text = table(per_seed, args.rows)
    command = "python benchmarks/bench_adaptation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = f"{platform.processor() or platform.machine()}, {args.threads} torch threads, CPU only, {platform.system()}"
    minutes = (time.perf_counter() - started) / 60
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": per_seed}, indent=2))
    if args.out is not None:
        write_report(args.out, text, command, machine, minutes, args)


def write_report(path: Path, text: str, command: str, machine: str, minutes: float, args: argparse.Namespace) -> None:
    """Replace the generated block of docs/adaptation.md, keeping the hand-written text around it."""
    replace_block(
        path,
        "bench_adaptation",
        [
            *measured_header(machine, minutes, command),
            f"Scenes {args.size} px; {args.n_source} labeled source, {args.n_target} unlabeled target and {args.n_eval} held-out "
            f"labeled target scenes per seed; `tiny` backbone; {args.steps} steps (the --from run: {args.from_steps} more), "
            f"batch {args.batch_size}, crop {args.crop}, select {args.select}, confidence {args.confidence}.",
            "",
            text,
        ],
        "# Domain adaptation\n\n",
    )


if __name__ == "__main__":
    main()
