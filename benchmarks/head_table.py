"""Paired comparison of one setting's values from bench_real.py runs (issue 16): heads, class weights.

    python benchmarks/head_table.py /tmp/lin_s*.json /tmp/lp_s*.json --out docs/benchmarks-real.md
    python benchmarks/head_table.py /tmp/lp_s*.json /tmp/p25_s*.json --vary class_weight_power \
        --reference 0.5 --block weights_study --out docs/benchmarks-real.md

For every (setting, backbone, rule, other training settings) group that ran with more than one value
of the compared setting (`--vary`: the head, `--decoder`, by default; or a training setting such as
`class_weight_power`), a table per value: mIoU over the seeds every value shares, the paired
difference to the first value of `--reference` that ran (seed by seed: same crops, same selection
draw), how many seeds it is ahead on, and the IoU of each class beside the per-pixel classifier's on
the same seeds. A class below the per-pixel classifier is marked, because that is the issue's bar.
Rendered into the `head_study` block (or `--block`) of the page given by --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from real_table import EARLIER_TRAIN, mean_std, paired, parameter_range
from report_block import study_header, write_or_print
from selection_table import load


def value_of(record: dict[str, Any], vary: str) -> str:
    """The compared setting's value in a record, as its row is named; for several settings
    (`--vary calibrate,val_crops`) each one's name and value."""
    if vary == "decoder":
        return str(record["decoder"])
    names = vary.split(",")
    values = [str(record["train"].get(name, EARLIER_TRAIN.get(name))) for name in names]
    return values[0] if len(names) == 1 else ", ".join(f"{n} {v}" for n, v in zip(names, values))


def groups(records: list[dict[str, Any]], vary: str = "decoder") -> dict[str, dict[str, list[dict[str, Any]]]]:
    """(setting, backbone, rule, head, the other training settings) -> value of `vary` -> records,
    for cegate rows only; only groups where more than one value ran."""
    by: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        if r.get("rule") is None:
            continue
        train = {k: v for k, v in r["train"].items() if k not in vary.split(",")}
        key = json.dumps([r["setting"], r["backbone"], r["row"], None if vary == "decoder" else r["decoder"], train], sort_keys=True)
        by.setdefault(key, {}).setdefault(value_of(r, vary), []).append(r)
    return {k: v for k, v in by.items() if len(v) > 1}


def table(heads: dict[str, list[dict[str, Any]]], records: list[dict[str, Any]], reference: list[str], vary: str = "decoder") -> list[str]:
    shared = set.intersection(*({r["seed"] for r in rows} for rows in heads.values()))
    seeds = sorted(shared)
    if not seeds:
        return []
    by_head = {head: {r["seed"]: r for r in rows if r["seed"] in shared} for head, rows in heads.items()}
    first = next(iter(heads.values()))[0]
    base = next((h for h in reference if h in by_head), next(iter(by_head)))
    pixel = {r["seed"]: r for r in records if r["row"] == "pixel" and r["setting"] == first["setting"] and r["seed"] in shared}
    classes = list(first["iou"])
    t = first["train"]
    lines = [
        f"### {first['setting']}: {first['backbone']}, rule {first['row']}, heads compared"
        if vary == "decoder"
        else f"### {first['setting']}: {first['backbone']}, {first['decoder']} head, rule {first['row']}, {vary} compared",
        "",
        f"{t['steps']} steps, batch {t['batch_size']}, crop {t['crop']}, lr {t['lr']}, loss {t.get('loss', 'ce')}, "
        f"rare crops {t.get('rare_crops', 1)}; {len(seeds)} paired seeds ({' '.join(map(str, seeds))}). "
        "Bold: a class below the per-pixel classifier.",
        "",
        f"| {'head' if vary == 'decoder' else vary} | mIoU, mean ± std | minus {base}, paired (ahead) | "
        + " | ".join(f"IoU {c}" for c in classes)
        + " | trained parameters | train s per run |",
        "|---|---|---|" + "---|" * len(classes) + "---|---|",
    ]
    pixel_iou = {c: statistics.mean(pixel[s]["iou"][c] for s in seeds) for c in classes} if len(pixel) == len(seeds) else {}
    if pixel_iou:
        lines.append(
            f"| per-pixel Gaussian classifier | {mean_std([pixel[s]['miou'] for s in seeds])} | – | "
            + " | ".join(f"{pixel_iou[c]:.3f}" for c in classes)
            + " | – | – |"
        )
    for head, runs in by_head.items():
        entries = [runs[s] for s in seeds]
        cells = []
        for c in classes:
            iou = statistics.mean(e["iou"][c] for e in entries)
            cells.append(f"**{iou:.3f}**" if pixel_iou and iou < pixel_iou[c] else f"{iou:.3f}")
        seconds = statistics.mean(e["train_seconds"] for e in entries)
        lines.append(
            f"| {head} | {mean_std([e['miou'] for e in entries])} | {paired(by_head, head, base)} | "
            + " | ".join(cells)
            + f" | {parameter_range(entries)} | {seconds:.0f} |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path, help="bench_real.py --json files")
    parser.add_argument(
        "--vary", default="decoder", help="the setting compared: decoder, or training settings (class_weight_power; several: calibrate,val_crops)"
    )
    parser.add_argument("--reference", nargs="+", default=["linear", "unet"], help="the value others are paired with (first that ran)")
    parser.add_argument("--out", type=Path, help="page whose generated block is replaced (default: print)")
    parser.add_argument("--block", default="head_study", help="name of that block")
    args = parser.parse_args(argv)
    records, headers = load(args.json)
    found = groups(records, args.vary)
    if not found:
        print(f"no group of runs with more than one value of {args.vary} in those files", file=sys.stderr)
        return 2
    seeds = sorted({r["seed"] for r in records if r.get("rule")})
    lines = study_header(headers, seeds, "python benchmarks/head_table.py <those --json files> --out docs/benchmarks-real.md")
    for heads in found.values():
        lines += table(heads, records, args.reference, args.vary)
    write_or_print(args.out, args.block, lines, "# Heads\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
