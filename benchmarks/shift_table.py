"""The real-shift table of docs/benchmarks-real.md: does `--target` help off the training region?

    python benchmarks/shift_table.py results/real_shift/*.json --out docs/benchmarks-real.md

Reads bench_real.py's --json files (a later file's record replaces an earlier one's) and renders
one table per setting with an unlabeled target: the baselines, source only, each way of using the
target (told apart by the self-training settings a record lists), and the labels-on-target
reference; mean ± std over seeds, per-class IoU, the paired difference to source only with the
seeds ahead, the share of the source-to-reference gap closed, what the guard kept, and the
training time relative to source only, seed by seed. Source-first records are judged again by
today's guard (`rejudged`), so runs made before a threshold changed read as it now decides.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real import SELF_TRAINING_EARLIER, merge  # noqa: E402
from real_table import mean_std  # noqa: E402
from report_block import replace_block  # noqa: E402

BLOCK = "real_shift"
TITLES = {
    "dubai": "Aerial RGB, districts 1-3 -> districts 4-6 of Dubai (`dubai`)",
    "dubai-reverse": "Aerial RGB, districts 4-6 -> districts 1-3 (`dubai-reverse`)",
    "naip-shift": "NAIP under a constructed sensor shift (`naip-shift`)",
}
BASELINES = {
    "majority": "majority class everywhere",
    "pixel": "per-pixel Gaussian classifier",
    "pixel+target": "per-pixel Gaussian, each domain standardised",
    "pixel-reference": "per-pixel Gaussian fitted on target labels",
}


def variant(record: dict[str, Any]) -> str:
    """The row a record belongs to: its training mode, and for self-training the settings it differs in."""
    mode = record["mode"]
    if mode == "baseline":
        return record["row"]
    if mode != "self-training":
        return mode
    train = record.get("train") or {}
    options = {name: train.get(name, default) for name, default in SELF_TRAINING_EARLIER.items()}
    if options["adapt_schedule"] == "joint":
        return "--target as shipped before: DACS from step 0" + ("" if options["target_norm"] == "target" else ", source statistics")
    parts = [
        f"adapt steps {options['adapt_steps']}" if options["adapt_steps"] else "",
        "" if options["target_norm"] == "auto" else f"`--target-norm {options['target_norm']}`",
        "" if options["source_batch"] else "no source batch",
        "" if options["guard"] else "no guard",
    ]
    return "--target, source-first" + "".join(f", {p}" for p in parts if p)


def rejudged(record: dict[str, Any], source: dict[str, Any] | None, class_names: list[str]) -> dict[str, Any]:
    """A source-first record as today's guard would end it: the guard is judged again from the
    inputs the run recorded (both models' class shares, both validation scores); where it now keeps
    the source model, the run's map is the source-only run's of the same seed (the source phase is
    that run, bit for bit), and the adapted model's score moves to `adapted`."""
    verdict = record.get("guard")
    if verdict is None or source is None:
        return record
    from cegate_cli.train.guard import judge

    again = judge(
        tuple(verdict["source_shares"]),
        tuple(verdict["adapted_shares"]),
        verdict["agreement"],
        verdict["source_val_miou"],
        verdict["adapted_val_miou"],
        class_names,
    )
    adapted = record.get("adapted") or {"miou": record["miou"], "iou": record["iou"]}
    if again.kept == verdict["kept"]:
        return record
    kept = source if again.kept == "source" else {**record, **adapted}
    return {**record, "miou": kept["miou"], "iou": kept["iou"], "guard": again.to_dict(), "adapted": adapted}


def label(row: str) -> str:
    return {
        "source-only": "source only",
        "target-stats": "source only, target read with its own statistics",
        "reference": "reference: trained on target labels",
    }.get(row, BASELINES.get(row, row))


def render(records: list[dict[str, Any]], headers: list[dict[str, Any]], backbone: str) -> list[str]:
    lines = ["Made by these runs (bench_real.py; machine and load averages at start and end):", "", "```"]
    lines += [f"{h['command']}   # {h['started'][:10]}, {h['machine']}, load {h['load_start']:.1f}-{h['load_end']:.1f}" for h in headers]
    lines += ["```", ""]
    for setting, title in TITLES.items():
        here = [r for r in records if r["setting"] == setting and r.get("backbone") in (None, backbone)]
        if not any(r["mode"] == "self-training" for r in here):
            continue
        rows: dict[str, dict[int, dict[str, Any]]] = {}
        for r in here:
            rows.setdefault(variant(r), {})[r["seed"]] = r
        source, reference = rows.get("source-only", {}), rows.get("reference", {})
        classes = list(next(iter(source.values()))["iou"]) if source else []
        for name, by_seed in rows.items():
            if name.startswith("--target, source-first"):
                rows[name] = {seed: rejudged(r, source.get(seed), classes) for seed, r in by_seed.items()}
        lines += [
            f"### {title}, `{backbone}`",
            "",
            "| row | seeds | mIoU | " + " | ".join(classes) + " | minus source only, paired (ahead) | gap to reference closed "
            "| guard kept source (adapted model's mIoU) | train time / source only |",
            "|---|---|---|" + "---|" * len(classes) + "---|---|---|---|",
        ]
        for name, by_seed in sorted(rows.items(), key=lambda item: _order(item[0])):
            seeds = sorted(by_seed)
            miou = [by_seed[s]["miou"] for s in seeds]
            per_class = [statistics.mean(by_seed[s]["iou"][c] or 0.0 for s in seeds) for c in classes]
            common = [s for s in seeds if s in source]
            diffs = [by_seed[s]["miou"] - source[s]["miou"] for s in common]
            ties = sum(d == 0 for d in diffs)
            pair = (
                "–"
                if name == "source-only" or not diffs
                else (
                    f"{statistics.mean(diffs):+.3f}{f' ± {statistics.stdev(diffs):.3f}' if len(diffs) > 1 else ''} "
                    f"({sum(d > 0 for d in diffs)}/{len(diffs)}{f', {ties} equal' if ties else ''})"
                )
            )
            gaps = [
                (by_seed[s]["miou"] - source[s]["miou"]) / (reference[s]["miou"] - source[s]["miou"])
                for s in common
                if s in reference and reference[s]["miou"] > source[s]["miou"]
            ]
            closed = f"{statistics.mean(gaps):.0%}" if gaps and name.startswith("--target") else "–"
            guarded = [by_seed[s] for s in seeds if "guard" in by_seed[s]]
            kept = "–"
            if guarded:
                fired = [g for g in guarded if g["guard"]["kept"] == "source"]
                adapted = ", ".join(f"{g['adapted']['miou']:.3f} on seed {g['seed']}" for g in fired)
                kept = f"{len(fired)}/{len(guarded)}" + (f" ({adapted})" if fired else "")
            ratios = [
                by_seed[s]["train_seconds"] / source[s]["train_seconds"]
                for s in common
                if by_seed[s]["mode"] in ("self-training", "reference") and source[s]["train_seconds"]
            ]
            ratio = f"{statistics.mean(ratios):.2f}x" if ratios and name != "source-only" else "–"
            lines.append(
                f"| {label(name)} | {len(seeds)} | {mean_std(miou)} | "
                + " | ".join(f"{v:.3f}" for v in per_class)
                + f" | {pair} | {closed} | {kept} | {ratio} |"
            )
        lines.append("")
    return lines


def _order(row: str) -> tuple[int, str]:
    ranks = ["majority", "pixel", "pixel+target", "pixel-reference", "source-only", "target-stats"]
    if row in ranks:
        return ranks.index(row), row
    return (len(ranks) + 2 if row == "reference" else len(ranks) + 1), row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, nargs="+")
    parser.add_argument("--backbone", default="galileo-nano")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    records, headers = merge(args.json)
    lines = render(records, headers, args.backbone)
    print("\n".join(lines))
    if args.out is not None:
        replace_block(args.out, BLOCK, lines, "# Benchmarks on real imagery\n\n")


if __name__ == "__main__":
    main()
