"""What `cegate demo` gives with each offline backbone: target mIoU, per-class IoU and wall time.

    python benchmarks/bench_demo.py --backbones tiny galileo-nano --seeds 0 --out docs/demo-backbones.md

Runs the demo exactly as `cegate demo` does (its generated source and shifted target scenes, its
training settings, its whole-scene mapping and scoring), once trained on the labeled source alone
(`--source-only`) and once adapting to the unlabeled target (self-training), for every backbone
and seed, one after the other on this machine. The decision the issue asks for (which backbone
the demo adapts) is read from this table: `tiny` was pretrained on these very classes, so its
figures say little about the method; galileo-nano was not. Wall times are per run and depend on
the machine's load, which the block states.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from report_block import cpu_name, measured_header, replace_block

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cegate_cli.pipelines.demo import DemoOptions, run_demo  # noqa: E402


def measure(backbone: str, seed: int, source_only: bool, steps: int, root: Path) -> dict[str, object]:
    options = DemoOptions(root=root, steps=steps, seed=seed, overwrite=True, device="cpu", source_only=source_only, backbone=backbone)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = run_demo(options)
    seconds = time.perf_counter() - started
    matrix = result.evaluation.matrix
    names = [c.name for c in result.adapted.manifest.classes.classes]
    iou = [None if v != v else float(v) for v in matrix.iou()]
    return {
        "backbone": backbone,
        "seed": seed,
        "mode": "source-only" if source_only else "self-training",
        "steps": steps,
        "miou": float(matrix.miou()),
        "iou": iou,
        "classes": names,
        "seconds": seconds,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "selected": [f"{k}@{l}" for k, l in result.adapted.manifest.final_selection],
    }


def render(rows: list[dict[str, object]], command: str, minutes: float) -> list[str]:
    lines = measured_header(f"{cpu_name()}, {os.cpu_count()} cores, CPU only", minutes, command)
    classes = next((r["classes"] for r in rows if r["classes"]), [])
    lines.append("| backbone | trained on | seed | target mIoU | " + " | ".join(str(c) for c in classes) + " | wall time | load (1 min) |")
    lines.append("|---" * (6 + len(classes)) + "|")
    for r in rows:
        ious = " | ".join("-" if v is None else f"{v:.3f}" for v in r["iou"])  # type: ignore[union-attr]
        lines.append(
            f"| {r['backbone']} | {r['mode']} | {r['seed']} | {r['miou']:.3f} | {ious} | "
            f"{r['seconds'] / 60:.1f} min | {r['load_before']:.1f} -> {r['load_after']:.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["tiny", "galileo-nano"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=DemoOptions().steps)
    parser.add_argument("--modes", nargs="+", choices=("source-only", "self-training"), default=["source-only", "self-training"])
    parser.add_argument("--json", type=Path, help="write the rows here (rewritten after each run)")
    parser.add_argument("--from-json", type=Path, help="render an earlier --json file instead of running")
    parser.add_argument("--out", type=Path, help="markdown page whose generated block is replaced")
    args = parser.parse_args()
    command = "python benchmarks/bench_demo.py " + " ".join(sys.argv[1:])
    started = time.perf_counter()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        rows, minutes, command = saved["rows"], saved["minutes"], saved["command"]
    else:
        rows = []
        for backbone in args.backbones:
            for seed in args.seeds:
                for mode in args.modes:
                    with tempfile.TemporaryDirectory(prefix="cegate-bench-demo-") as scratch:
                        row = measure(backbone, seed, mode == "source-only", args.steps, Path(scratch) / "demo")
                    rows.append(row)
                    print(f"{backbone} seed {seed} {mode}: target mIoU {row['miou']:.3f} in {row['seconds']:.0f} s", flush=True)
                    if args.json:
                        args.json.write_text(json.dumps({"rows": rows, "minutes": (time.perf_counter() - started) / 60, "command": command}, indent=1))
        minutes = (time.perf_counter() - started) / 60
    lines = render(rows, command, minutes)
    print("\n".join(lines))
    if args.out:
        replace_block(args.out, "bench_demo", lines, "# The demo's backbone\n\n")


if __name__ == "__main__":
    main()
