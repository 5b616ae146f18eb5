"""Benchmark quality: target-domain mIoU of Fisher gating against its baselines.

    python benchmarks/bench_quality.py --seeds 0 1 2 --out docs/benchmarks.md --json benchmarks/results/quality.json

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
Mode "dacs": source + unlabeled target (DACS self-training; the run keeps its last step, since
without target labels no step can be judged). Model selection never looks at target labels: the
held-out target scenes are only mapped (with `predict_scene`, the product's whole-scene path) and
scored once, after training.
"""

from __future__ import annotations

import argparse
import datetime as _dt
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
MODES = ("source", "dacs")


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
    parser.add_argument("--rows", nargs="+", default=[r.key for r in ROWS], choices=[r.key for r in ROWS])
    parser.add_argument("--dacs-rows", nargs="*", default=["none", "all", "random", "fisher", "fisher_re"], choices=[r.key for r in ROWS],
                        help="rows also run with the unlabeled target (DACS)")
    parser.add_argument("--work", type=Path, default=None, help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file for the table (its generated block is replaced)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number as JSON")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="render the tables from an earlier --json file (e.g. a run cut off after some seeds) instead of training")
    return parser.parse_args(argv)


def evaluate(run_dir: Path, eval_dir: Path, scratch: Path) -> dict[str, float]:
    """Target mIoU of a finished run. A "full" run also carries the backbone (backbone.* tensors),
    which `load_run` does not read, so it is loaded here on top."""
    from cegate_cli.loaded_run import load_run
    from cegate_cli.run import ADAPTER_BEST, load_weights

    loaded = load_run(run_dir, device="cpu")
    manifest = loaded.manifest
    backbone = {k[len("backbone.") :]: v for k, v in load_weights(run_dir / ADAPTER_BEST).items() if k.startswith("backbone.")}
    if backbone:
        missing, unexpected = loaded.model.backbone.load_state_dict(backbone, strict=False)
        if unexpected:
            raise RuntimeError(f"{run_dir}: backbone tensors that fit nothing: {unexpected[:3]}")
    scores = target_scores(
        loaded.model, eval_dir, manifest.normalization, manifest.bands, manifest.classes, loaded.model.backbone.patch_size, scratch
    )
    parameters = manifest.parameters
    trained = parameters["decoder"] + (parameters["backbone"] if manifest.training.selection == "full" else parameters["modules_trained"])
    source_val = manifest.metrics.get("best_val_miou")
    if source_val is None:
        source_val = manifest.metrics.get("last_val_miou")
    return {
        "target_miou": scores["target_miou"],
        "source_val_miou": float(source_val) if source_val is not None else float("nan"),
        "trained_parameters": int(trained),
        "modules": len(manifest.ever_selected),
    }


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> dict[str, dict[str, dict[str, float]]]:
    from cegate_cli.adapt import AdaptOptions, adapt
    from cegate_cli.data.synthetic import make_demo_dataset
    from cegate_cli.toolbox import ToolboxConfig
    from cegate_cli.train.config import TrainConfig

    root = work / f"seed{seed}"
    data = make_demo_dataset(root / "data", size=args.size, seed=seed)
    base = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr, seed=seed, select=args.select,
        warmup_steps=min(25, args.steps // 10), val_every=max(1, args.steps // 4), val_crops=8, save_every=args.steps,
        fisher_samples=8, device="cpu",
    )
    results: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in MODES}
    plan = [("source", key) for key in args.rows] + [("dacs", key) for key in args.dacs_rows]
    for mode, key in plan:
        row = BY_KEY[key]
        train = replace(base, selection=row.selection, reselect_every=(args.steps // 3 if row.reselect else 0))
        run_dir = root / mode / key
        started = time.perf_counter()
        adapt(AdaptOptions(
            source=data.source_dir, out=run_dir, backbone="tiny", kinds=row.kinds, toolbox=ToolboxConfig(), train=train,
            target=data.target_dir if mode == "dacs" else None, overwrite=True,
        ))
        seconds = time.perf_counter() - started
        scores = evaluate(run_dir, data.target_labels_dir, root / "maps" / mode / key)
        results[mode][key] = {**scores, "seconds": seconds}
        print(
            f"seed {seed} {mode:<6} {key:<10} target mIoU {scores['target_miou']:.4f}  source val {scores['source_val_miou']:.4f}  "
            f"trained {scores['trained_parameters']:,}  ({seconds:.0f} s)",
            file=sys.stderr, flush=True,
        )
    return results


def table(per_seed: dict[int, dict], mode: str, keys: list[str]) -> str:
    seeds = sorted(per_seed)
    lines = [
        "| method | target mIoU, mean ± std | " + " | ".join(f"seed {s}" for s in seeds)
        + " | source val mIoU (mean) | trained parameters | s per run |",
        "|---|---|" + "---|" * len(seeds) + "---|---|---|",
    ]
    for row in ROWS:
        if row.key not in keys:
            continue
        got = [per_seed[s][mode][row.key] for s in seeds if row.key in per_seed[s][mode]]
        if not got:
            continue
        values = [g["target_miou"] for g in got]
        spread = f"{statistics.stdev(values):.3f}" if len(values) > 1 else "? (1 seed)"
        by_seed = [f"{per_seed[s][mode][row.key]['target_miou']:.3f}" if row.key in per_seed[s][mode] else "–" for s in seeds]
        params = sorted({g["trained_parameters"] for g in got})
        lines.append(
            f"| {row.label} | {statistics.mean(values):.3f} ± {spread} | " + " | ".join(by_seed)
            + f" | {statistics.mean(g['source_val_miou'] for g in got):.3f} | "
            + "/".join(f"{p:,}" for p in params)
            + f" | {statistics.mean(g['seconds'] for g in got):.0f} |"
        )
    return "\n".join(lines)


def machine(threads: int) -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {threads} torch threads, CPU only, {platform.system()}"


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        per_seed = {int(seed): value for seed, value in saved["results"].items()}
        args.seeds = sorted(per_seed)
        render(args, per_seed, saved.get("command", "(unknown)"), saved.get("minutes", float("nan")))
        return
    command = "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="cegate-bench-quality-") as scratch:
        work = args.work or Path(scratch)
        per_seed = {}
        for seed in args.seeds:
            per_seed[seed] = run_seed(seed, args, work)
            if args.json is not None:  # after every seed: a cut-off run still leaves what it measured
                from cegate_cli.atomic import write_text_atomic

                minutes = (time.perf_counter() - started) / 60
                record = {"command": command, "minutes": minutes, "args": {k: str(v) for k, v in vars(args).items()}, "results": per_seed}
                write_text_atomic(args.json, json.dumps(record, indent=2))
    render(args, per_seed, command, (time.perf_counter() - started) / 60)


def render(args: argparse.Namespace, per_seed: dict[int, dict], command: str, minutes: float) -> None:
    tables = {"source": table(per_seed, "source", args.rows), "dacs": table(per_seed, "dacs", args.dacs_rows)}
    for mode, text in tables.items():
        print(f"\n{mode}\n{text}")
    if args.out is not None:
        write_report(args.out, tables, command, machine(args.threads), minutes, args)


def write_report(path: Path, tables: dict[str, str], command: str, where: str, minutes: float, args: argparse.Namespace) -> None:
    """Replace the generated block of docs/benchmarks.md, keeping the hand-written text around it."""
    from cegate_cli.atomic import write_text_atomic

    begin, end = "<!-- bench_quality:begin -->", "<!-- bench_quality:end -->"
    block = "\n".join([
        begin,
        f"Measured {_dt.date.today().isoformat()} on {where}; {minutes:.0f} minutes in all.",
        "",
        "```",
        command,
        "```",
        "",
        f"Demo scenes {args.size} px (6 labeled source, 4 unlabeled target, 4 held-out labeled target per seed); `tiny` "
        f"backbone; {args.steps} steps, batch {args.batch_size}, crop {args.crop}, lr {args.lr}, select {args.select} "
        f"(random and Fisher rows), seeds {' '.join(map(str, args.seeds))}. Trained parameters count the head and the trained "
        "modules (full fine-tuning: the head and the backbone); where reselection or seeds give different counts, all are listed.",
        "",
        "### Labeled source only",
        "",
        tables["source"],
        "",
        "### Source + unlabeled target (DACS self-training)",
        "",
        tables["dacs"],
        end,
    ])
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = (old.rstrip() + "\n\n" if old else "# Benchmarks\n\n## Quality\n\n") + block + "\n"
    write_text_atomic(path, new)


if __name__ == "__main__":
    main()
