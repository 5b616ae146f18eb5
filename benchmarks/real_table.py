"""Markdown tables of benchmarks/bench_real.py's records: one per setting x backbone x head.

Kept apart from the runner so `--from-json` renders without touching the data or training code,
and so the table logic can be read on its own. Seeds change the training (and, for `synthetic`,
the scenes) while the test pixels stay the same within a setting, so besides mean ± std every row
gets its paired difference to the `pixel` row and to Fisher selection seed by seed, with the number
of seeds on which it is ahead: the shared part of the seed-to-seed variance cancels in the pair.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from typing import Any

from real_shift import Shift
from report_block import measured_header, run_dates

RULE_ORDER = (
    "none",
    "full",
    "all",
    "random",
    "random-cost",
    "fisher",
    "fisher-cost",
    "fisher-block",
    "fisher-agree",
    "fisher-warmup",
    "fisher-kaiming",
    "fisher-rescore",
    "oracle",
)
RULE_LABELS = {
    "none": "frozen backbone + head",
    "full": "full fine-tuning",
    "all": "all modules, no selection",
    "random": "random selection, same k",
    "random-cost": "random selection among fisher-cost's blocks, same k",
    "fisher": "Fisher, global top k (the paper's rule, fisher)",
    "fisher-cost": "Fisher, upper half of the blocks only (fisher-cost)",
    "fisher-block": "Fisher, ranked within each block (fisher-block)",
    "fisher-agree": "squared mean gradient (fisher-agree)",
    "fisher-warmup": "Fisher after head-only warm-up (steps/10)",
    "fisher-kaiming": "Fisher, Earth-Adapter with its authors' Kaiming init",
    "fisher-rescore": "Fisher, rescored every 100 steps (the paper's schedule)",
    "oracle": "oracle: the largest single-module gains on the test tiles, trained together",
}
EARLIER_TRAIN = {"class_weight_power": 0.5, "calibrate": False, "val_crops": 16, "illumination": 0.0}
"""Training settings that became settings after records were first written, with the value every
earlier record trained with: bench_real.py records one only when it differs from this, so new
records group with old ones, and the tables read a missing one as this."""

MODE_SUFFIX = {"source-only": "", "target-stats": "+tstats", "self-training": "+target", "reference": "-reference"}
BASELINE_LABELS = {
    "majority": "majority class everywhere",
    "pixel": "per-pixel Gaussian classifier (bands only)",
    "pixel+target": "per-pixel Gaussian, target statistics (each domain standardised)",
    "pixel-reference": "reference: per-pixel Gaussian fitted on target labels",
}
SETTING_TITLES = {
    "naip": "NAIP, in domain (train tiles -> test tiles)",
    "naip-shift": "NAIP under a sensor shift (train tiles -> shifted test tiles)",
    "synthetic": "Generated demo scenes (source -> held-out target)",
}


ROWS = {rule + suffix: (rule, mode) for mode, suffix in MODE_SUFFIX.items() for rule in RULE_ORDER}
"""Row name -> (rule, training mode) for every cegate row bench_real.py can produce."""
MODE_LABELS = {
    "source-only": "{}",
    "target-stats": "{}, source-only, target read with its own statistics",
    "self-training": "{}, + self-training on the unlabeled target",
    "reference": "reference: {}, trained on target labels",
}


def row_order() -> list[str]:
    return [*BASELINE_LABELS, *ROWS]


def row_label(row: str) -> str:
    if row in BASELINE_LABELS:
        return BASELINE_LABELS[row]
    if row not in ROWS:
        return row
    rule, mode = ROWS[row]
    return MODE_LABELS[mode].format(RULE_LABELS[rule])


def fisher_partner(row: str) -> str | None:
    """The Fisher row of the same training mode (None for baselines)."""
    return "fisher" + MODE_SUFFIX[ROWS[row][1]] if row in ROWS else None


def added_to(row: str, rows: Iterable[str]) -> str | None:
    """The row a target row adds one thing to: target statistics add to the source-only run of the
    same rule; self-training adds to target statistics where that row was measured, else to the
    source-only run. None for source-only rows, references and baselines."""
    if row not in ROWS:
        return None
    rule, mode = ROWS[row]
    if mode == "target-stats":
        return rule
    if mode == "self-training":
        return rule + MODE_SUFFIX["target-stats"] if rule + MODE_SUFFIX["target-stats"] in rows else rule
    return None


def _key(entry: dict[str, Any], *names: str) -> str:
    return json.dumps([entry[n] for n in names], sort_keys=True)


def group(records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(description, records) per table: each cegate setting x backbone x head x training settings,
    with the baseline rows of the same setting and data; baselines with no cegate rows get their own."""
    baselines: dict[str, list[dict[str, Any]]] = {}
    tables: dict[str, list[dict[str, Any]]] = {}
    for entry in records:
        if entry["backbone"] is None:
            baselines.setdefault(_key(entry, "setting", "data"), []).append(entry)
        else:
            tables.setdefault(_key(entry, "setting", "data", "backbone", "decoder", "train"), []).append(entry)
    out = []
    used = set()
    for rows in tables.values():
        base_key = _key(rows[0], "setting", "data")
        used.add(base_key)
        out.append((rows[0], baselines.get(base_key, []) + rows))
    out += [(rows[0], rows) for key, rows in baselines.items() if key not in used]
    order = {name: i for i, name in enumerate(SETTING_TITLES)}
    return sorted(out, key=lambda item: (order.get(item[0]["setting"], 99), str(item[0]["backbone"]), str(item[0]["decoder"])))


def mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def paired(by_row: dict[str, dict[int, dict[str, Any]]], row: str, partner: str | None) -> str:
    """mean ± std of (row - partner) mIoU over the seeds both have, and on how many the row is ahead."""
    if partner is None or partner == row or partner not in by_row:
        return "–"
    seeds = sorted(set(by_row[row]) & set(by_row[partner]))
    diffs = _finite(
        by_row[row][s]["miou"] - by_row[partner][s]["miou"] for s in seeds if by_row[row][s]["miou"] is not None and by_row[partner][s]["miou"] is not None
    )
    if not diffs:
        return "–"
    spread = f" ± {statistics.stdev(diffs):.3f}" if len(diffs) > 1 else ""
    return f"{statistics.mean(diffs):+.3f}{spread} ({sum(d > 0 for d in diffs)}/{len(diffs)})"


def parameter_range(entries: list[dict[str, Any]]) -> str:
    """The trained parameter count of some runs, or its range when they differ (seeds choose different modules)."""
    counts = sorted({int(e["trained_parameters"]) for e in entries})
    return f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The markdown lines of one table (rows x mIoU, class IoUs, accuracy, time, parameters, pairs)."""
    by_row: dict[str, dict[int, dict[str, Any]]] = {}
    for entry in rows:
        by_row.setdefault(entry["row"], {})[entry["seed"]] = entry
    classes = list(rows[0]["iou"])
    targets = any(added_to(row, by_row) for row in by_row)
    lines = [
        "| row | mIoU, mean ± std | "
        + " | ".join(f"IoU {c}" for c in classes)
        + " | accuracy | s per run (train + eval) | trained parameters | minus pixel, paired (ahead) | minus Fisher, paired (ahead) |"
        + (" minus the row it adds to, paired (ahead) |" if targets else ""),
        "|---|---|" + "---|" * len(classes) + "---|---|---|---|---|" + ("---|" if targets else ""),
    ]
    known = row_order()
    for row in sorted(by_row, key=lambda r: known.index(r) if r in known else len(known)):
        entries = [by_row[row][s] for s in sorted(by_row[row])]
        ious = [_finite(e["iou"][c] for e in entries) for c in classes]
        lines.append(
            f"| {row_label(row)} | {mean_std(_finite(e['miou'] for e in entries))} | "
            + " | ".join(f"{statistics.mean(v):.3f}" if v else "–" for v in ious)
            + f" | {statistics.mean(_finite(e['accuracy'] for e in entries)):.3f}"
            + f" | {statistics.mean(e['train_seconds'] for e in entries):.0f} + {statistics.mean(e['eval_seconds'] for e in entries):.0f}"
            + f" | {parameter_range(entries)} | {paired(by_row, row, 'pixel')} | {paired(by_row, row, fisher_partner(row))} |"
            + (f" {paired(by_row, row, added_to(row, by_row))} |" if targets else "")
        )
    return lines


def describe(first: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The lines above a table: data, training settings, seeds, and whether all rows saw the same pixels."""
    data = first["data"]
    parts = [", ".join(f"{k.replace('_', ' ')} {' '.join(v) if isinstance(v, list) else v}" for k, v in data.items() if k != "shift")]
    if first["train"]:
        t = first["train"]
        parts.append(f"{t['steps']} steps, batch {t['batch_size']}, crop {t['crop']}, lr {t['lr']}, select {t['select']}")
    parts.append("seeds " + " ".join(str(s) for s in sorted({e["seed"] for e in rows})))
    pixels = sorted({e["pixels"] for e in rows})
    scored = f"{pixels[0]:,} test pixels scored per row" if len(pixels) == 1 else f"WARNING: rows scored different pixel counts {pixels}"
    lines = ["; ".join(parts) + f"; {scored}."]
    if "shift" in data:
        lines.append(f"Shift: {Shift.from_dict(data['shift']).describe(tuple(data['bands']))}.")
    return lines


def header(headers: list[dict[str, Any]], note: str | None) -> list[str]:
    """Date, machine, minutes and the exact commands (report_block), then each run's start and load."""
    machines = sorted({h.get("machine", "?") for h in headers})
    minutes = sum(float(h.get("minutes", float("nan"))) for h in headers)
    lines = [f"**{note}**", ""] if note else []
    lines += measured_header("; ".join(machines), minutes, "\n".join(h.get("command", "?") for h in headers), run_dates(headers))
    for h in headers:
        lines.append(
            f"- run started {h.get('started', '?')}: 1-minute load average {h.get('load_start', float('nan')):.2f} at start, "
            f"{h.get('load_end', float('nan')):.2f} at end; {h.get('threads', '?')} torch threads, OMP_WAIT_POLICY={h.get('omp_wait_policy', '?')}"
        )
    return [*lines, ""]


def render_block(records: list[dict[str, Any]], headers: list[dict[str, Any]], note: str | None = None) -> list[str]:
    """Every line of the generated block of docs/benchmarks-real.md."""
    lines = header(headers, note)
    for first, rows in group(records):
        title = SETTING_TITLES.get(first["setting"], first["setting"])
        if first["backbone"] is not None:
            title += f": `{first['backbone']}` backbone, {first['decoder']} head"
        trained = [r for r in rows if r.get("train")]
        if trained and all(r["train"].get("prior_alignment") for r in trained):
            title += ", self-training with `--prior-alignment`"
        lines += [f"### {title}", "", *describe(first, rows), "", *table(rows), ""]
    return lines
