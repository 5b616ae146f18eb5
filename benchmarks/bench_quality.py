"""Benchmark quality: target-domain mIoU of Fisher gating against its baselines.

    python benchmarks/bench_quality.py --seeds 0 1 2 3 4 --json quality.json          # every mode, unet head
    python benchmarks/bench_quality.py --decoder linear --json quality_linear.json     # the same, linear head
    python benchmarks/bench_quality.py --from-json quality.json --out docs/benchmarks.md

(docs/benchmarks.md gives the exact commands behind its tables: about 75 minutes for the unet head
and 30 for the linear head on 2 CPU cores.)

For every seed, `make_demo_dataset` writes a labeled source domain, an unlabeled target folder and
a labeled held-out target folder (another sensor, season and resolution; see
benchmarks/bench_adaptation.py). Every row trains the `tiny` backbone (its pretrained weights ship
with the package) with the same steps, crop, batch and learning rate; only the rule that decides
what trains differs (`TrainConfig.selection`, `AdaptOptions.kinds`):

  none        frozen backbone + head
  full        full fine-tuning: every backbone weight + head, no modules
  lora        every LoRA module, nothing else          (kinds lora, selection all)
  adapter     every Adapter module                     (kinds adapter, selection all)
  earth       every Earth-Adapter module               (kinds earth, selection all)
  all         every module of the toolbox, no selection
  random      `--select` modules drawn at random       (the same count as Fisher)
  fisher      Fisher selection once, at step 0
  fisher_re   Fisher selection at step 0 and every steps/3

Mode "source": the labeled source alone (the run keeps its best step on held-out SOURCE images).
Mode "dacs": source + unlabeled target (DACS self-training, target statistics: what `adapt --target`
does by default; the run keeps its last step, since without target labels no step can be judged).
Mode "dacs_sstats": the same with `--target-norm source`, so self-training alone has to bridge the
radiometric shift that target statistics otherwise absorb (more room for the modules to matter). Model selection never looks at target labels: the
held-out target scenes are only mapped (with `predict_scene`, the product's whole-scene path) and
scored once, after training.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adaptation import target_scores  # noqa: E402  (same scoring as the adaptation benchmark)
from report_block import cpu_name, measured_header, replace_block  # noqa: E402


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    selection: str
    kinds: tuple[str, ...] = ("lora", "adapter", "earth")
    reselect: bool = False


ROWS = (
    Row("none", "frozen backbone + head", "none"),
    Row("full", "full fine-tuning", "full"),
    Row("lora", "LoRA only (all blocks)", "all", ("lora",)),
    Row("adapter", "Adapter only (all blocks)", "all", ("adapter",)),
    Row("earth", "Earth-Adapter only (all blocks)", "all", ("earth",)),
    Row("all", "all modules, no selection", "all"),
    Row("random", "random selection, same k", "random"),
    Row("fisher", "Fisher selection once (cegate)", "fisher"),
    Row("fisher_re", "Fisher selection + reselection every steps/3 (cegate)", "fisher", reselect=True),
)
BY_KEY = {row.key: row for row in ROWS}
MODES = ("source", "dacs", "dacs_sstats")
MODE_TITLES = {
    "source": "Labeled source only",
    "dacs": "Source + unlabeled target (DACS self-training, target statistics: the default)",
    "dacs_sstats": "Source + unlabeled target (DACS self-training, source statistics: `--target-norm source`)",
}
PAIRED_WITH = "fisher"  # the paired column: each row minus Fisher-once on the same seed (same scenes, same crops)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=192, help="scene side in pixels")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--select", default="0.25")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--decoder",
        choices=("unet", "linear"),
        default="unet",
        help="segmentation head; a linear head cannot absorb the shift itself, so the backbone's modules must",
    )
    parser.add_argument("--rows", nargs="+", default=[r.key for r in ROWS], choices=[r.key for r in ROWS])
    parser.add_argument(
        "--dacs-rows",
        nargs="*",
        default=["none", "all", "random", "fisher", "fisher_re"],
        choices=[r.key for r in ROWS],
        help="rows also run with the unlabeled target (DACS), in each DACS mode of --modes",
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--work", type=Path, default=None, help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file for the table (its generated block is replaced)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number as JSON")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        default=None,
        help="render the tables from earlier --json files instead of training (e.g. a run cut off after some "
        "seeds, or runs of different --modes); their results are merged seed by seed and mode by mode",
    )
    return parser.parse_args(argv)


def evaluate(run_dir: Path, eval_dir: Path, scratch: Path) -> dict[str, float]:
    """Target mIoU of a finished run. A "full" run also carries the backbone (backbone.* tensors),
    which `load_run` does not read, so it is loaded here on top."""
    from cegate_cli.run import ADAPTER_BEST, load_run, load_weights

    loaded = load_run(run_dir, device="cpu")
    manifest = loaded.manifest
    backbone = {k[len("backbone.") :]: v for k, v in load_weights(run_dir / ADAPTER_BEST).items() if k.startswith("backbone.")}
    if backbone:
        missing, unexpected = loaded.model.backbone.load_state_dict(backbone, strict=False)
        if unexpected:
            raise RuntimeError(f"{run_dir}: backbone tensors that fit nothing: {unexpected[:3]}")
    scores = target_scores(loaded.model, eval_dir, manifest.normalization, manifest.bands, manifest.classes, loaded.model.backbone.patch_size, scratch)
    parameters = manifest.parameters
    trained = parameters.decoder + (parameters.backbone if manifest.training.selection == "full" else parameters.modules_trained)
    source_val = manifest.saved_val_miou
    return {
        "target_miou": scores["target_miou"],
        "source_val_miou": float(source_val) if source_val is not None else float("nan"),
        "trained_parameters": int(trained),
        "modules": len(manifest.ever_selected),
    }


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> dict[str, dict[str, dict[str, float]]]:
    from cegate_cli.data.synthetic import make_demo_dataset
    from cegate_cli.options.train import SelfTrainConfig, TrainConfig
    from cegate_cli.pipelines.adapt import AdaptOptions, adapt
    from cegate_cli.toolbox import ToolboxConfig

    root = work / f"seed{seed}"
    data = make_demo_dataset(root / "data", size=args.size, seed=seed)
    base = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        seed=seed,
        select=args.select,
        warmup_steps=min(25, args.steps // 10),
        val_every=max(1, args.steps // 4),
        val_crops=8,
        save_every=args.steps,
        fisher_samples=8,
        device="cpu",
        decoder=args.decoder,
    )
    results: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in MODES}
    plan = [(mode, key) for mode in args.modes for key in (args.rows if mode == "source" else args.dacs_rows)]
    for mode, key in plan:
        row = BY_KEY[key]
        train = replace(base, selection=row.selection, reselect_every=(args.steps // 3 if row.reselect else 0))
        run_dir = root / mode / key
        started = time.perf_counter()
        adapt(
            AdaptOptions(
                source=data.source_dir,
                out=run_dir,
                backbone="tiny",
                kinds=row.kinds,
                toolbox=ToolboxConfig(),
                train=train,
                target=data.target_dir if mode != "source" else None,
                overwrite=True,
                self_training=SelfTrainConfig(target_norm="source" if mode == "dacs_sstats" else "target"),
            )
        )
        seconds = time.perf_counter() - started
        scores = evaluate(run_dir, data.target_labels_dir, root / "maps" / mode / key)
        results[mode][key] = {**scores, "seconds": seconds}
        print(
            f"seed {seed} {mode:<6} {key:<10} target mIoU {scores['target_miou']:.4f}  source val {scores['source_val_miou']:.4f}  "
            f"trained {scores['trained_parameters']:,}  ({seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return results


def table(per_seed: dict[int, dict], mode: str, keys: list[str]) -> str:
    """One markdown table. Besides mean ± std, each row gets its difference to Fisher-once on the
    same seed: seeds change the scenes, and that shared part of the variance cancels in the pair."""
    seeds = sorted(per_seed)
    lines = [
        "| method | target mIoU, mean ± std | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | minus Fisher once, paired | source val mIoU (mean) | trained parameters | s per run |",
        "|---|---|" + "---|" * len(seeds) + "---|---|---|---|",
    ]
    for row in ROWS:
        if row.key not in keys:
            continue
        got = [per_seed[s][mode][row.key] for s in seeds if row.key in per_seed[s].get(mode, {})]
        if not got:
            continue
        values = [g["target_miou"] for g in got]
        spread = f"{statistics.stdev(values):.3f}" if len(values) > 1 else "? (1 seed)"
        by_seed = [f"{per_seed[s][mode][row.key]['target_miou']:.3f}" if row.key in per_seed[s].get(mode, {}) else "–" for s in seeds]
        params = sorted({g["trained_parameters"] for g in got})
        lines.append(
            f"| {row.label} | {statistics.mean(values):.3f} ± {spread} | "
            + " | ".join(by_seed)
            + f" | {paired(per_seed, mode, row.key)} | {statistics.mean(g['source_val_miou'] for g in got):.3f} | "
            + "/".join(f"{p:,}" for p in params)
            + f" | {statistics.mean(g['seconds'] for g in got):.0f} |"
        )
    return "\n".join(lines)


def paired(per_seed: dict[int, dict], mode: str, key: str) -> str:
    """Mean ± std over seeds of (row - Fisher once); "–" for Fisher itself or when no seed has both."""
    if key == PAIRED_WITH:
        return "–"
    both = [s for s in sorted(per_seed) if key in per_seed[s].get(mode, {}) and PAIRED_WITH in per_seed[s].get(mode, {})]
    diffs = [per_seed[s][mode][key]["target_miou"] - per_seed[s][mode][PAIRED_WITH]["target_miou"] for s in both]
    if not diffs:
        return "–"
    spread = f"{statistics.stdev(diffs):.3f}" if len(diffs) > 1 else "?"
    return f"{statistics.mean(diffs):+.3f} ± {spread}"


def machine(threads: int) -> str:
    return f"{cpu_name()}, {threads} torch threads, CPU only, {platform.system()}"


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.from_json is not None:
        settings: dict[str, str] = {}
        per_seed, commands, minutes = merge_saved(args.from_json, settings)
        for name in ("size", "steps", "crop", "batch_size", "lr", "select", "decoder", "threads"):
            if name in settings:  # describe the runs as they were made, not as this command's defaults
                setattr(args, name, type(getattr(args, name))(settings[name]))
        args.seeds = sorted(per_seed)
        render(args, per_seed, "\n".join(commands), minutes)
        return
    command = "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="cegate-bench-quality-") as scratch:
        work = args.work or Path(scratch)
        per_seed = {}
        for seed in args.seeds:
            per_seed[seed] = run_seed(seed, args, work)
            if args.json is not None:  # after every seed: a cut-off run still leaves what it measured
                from cegate_cli.infra.atomic import write_text_atomic

                minutes = (time.perf_counter() - started) / 60
                record = {"command": command, "minutes": minutes, "args": {k: str(v) for k, v in vars(args).items()}, "results": per_seed}
                write_text_atomic(args.json, json.dumps(record, indent=2))
    render(args, per_seed, command, (time.perf_counter() - started) / 60)


def merge_saved(paths: list[Path], settings: dict[str, str]) -> tuple[dict[int, dict], list[str], float]:
    """Results of several --json files as one: a later file's run replaces an earlier one's for the
    same seed, mode and row. `settings` receives the files' recorded arguments (as text)."""
    per_seed: dict[int, dict] = {}
    commands: list[str] = []
    minutes = 0.0
    for path in paths:
        saved = json.loads(path.read_text(encoding="utf-8"))
        settings.update(saved.get("args", {}))
        commands.append(saved.get("command", f"(unknown command: {path})"))
        minutes += float(saved.get("minutes", float("nan")))
        for seed, modes in saved["results"].items():
            for mode, rows in modes.items():
                per_seed.setdefault(int(seed), {}).setdefault(mode, {}).update(rows)
    return per_seed, commands, minutes


def render(args: argparse.Namespace, per_seed: dict[int, dict], command: str, minutes: float) -> None:
    tables = {mode: table(per_seed, mode, args.rows if mode == "source" else args.dacs_rows) for mode in args.modes}
    tables = {mode: text for mode, text in tables.items() if text.count("\n") > 1}  # a mode nothing was measured in
    for mode, text in tables.items():
        print(f"\n{mode}\n{text}")
    if args.out is not None:
        write_report(args.out, tables, command, machine(args.threads), minutes, args)


def write_report(path: Path, tables: dict[str, str], command: str, where: str, minutes: float, args: argparse.Namespace) -> None:
    """Replace the generated block of docs/benchmarks.md, keeping the hand-written text around it."""
    name = "bench_quality" if args.decoder == "unet" else f"bench_quality_{args.decoder}"  # one generated block per head
    replace_block(
        path,
        name,
        [
            *measured_header(where, minutes, command),
            f"Demo scenes {args.size} px (6 labeled source, 4 unlabeled target, 4 held-out labeled target per seed); `tiny` "
            f"backbone, {args.decoder} head; {args.steps} steps, batch {args.batch_size}, crop {args.crop}, lr {args.lr}, select {args.select} "
            f"(random and Fisher rows), seeds {' '.join(map(str, args.seeds))}. Trained parameters count the head and the trained "
            "modules (full fine-tuning: the head and the backbone); where reselection or seeds give different counts, all are listed.",
            "",
            *[part for mode, text in tables.items() for part in (f"### {MODE_TITLES[mode]}", "", text, "")],
        ],
        "# Benchmarks\n\n## Quality\n\n",
    )


if __name__ == "__main__":
    main()
