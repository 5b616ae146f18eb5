"""Paired comparison of selection rules from bench_real.py runs (issue 12): which rule earns its place.

    python benchmarks/selection_table.py /tmp/sel_s*.json --out docs/benchmarks.md

For every (setting, backbone, head, training settings) group of cegate rows, a table of the rules:
mIoU over the seeds all rules share, and the paired difference to random selection of the same size,
to all modules and to the frozen backbone + head (mean ± std over seeds, and on how many seeds the
rule is ahead), with the trained parameters beside them. Only seeds every rule of the group has are
used, so every difference is between runs on the same seed (same crops, same head initialisation).
Rendered into the `selection_study` block of the page given by --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from real_table import RULE_ORDER, SETTING_TITLES, row_label
from report_block import measured_header, replace_block

PARTNERS = ("random", "all", "none")
"""The baselines every rule is paired with: the same count drawn at random, every module, the head alone."""


def load(paths: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The cegate source-only records and the run headers of bench_real.py --json files."""
    records, headers = [], []
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        headers.append(data)
        records += [r for r in data["records"] if r.get("rule") and r.get("mode") == "source-only"]
    return records, headers


def groups(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        key = json.dumps([r["setting"], r["backbone"], r["decoder"], r["train"]], sort_keys=True)
        by.setdefault(key, []).append(r)
    return by


def paired(by_rule: dict[str, dict[int, float]], rule: str, partner: str, seeds: list[int]) -> str:
    if partner not in by_rule or partner == rule:
        return "–"
    diffs = [by_rule[rule][s] - by_rule[partner][s] for s in seeds]
    spread = f" ± {statistics.stdev(diffs):.3f}" if len(diffs) > 1 else ""
    return f"{statistics.mean(diffs):+.3f}{spread} ({sum(d > 0 for d in diffs)}/{len(diffs)})"


def table(rows: list[dict[str, Any]]) -> list[str]:
    by_rule: dict[str, dict[int, float]] = {}
    parameters: dict[str, set[int]] = {}
    seconds: dict[str, list[float]] = {}
    for r in rows:
        by_rule.setdefault(r["rule"], {})[r["seed"]] = r["miou"]
        parameters.setdefault(r["rule"], set()).add(int(r["trained_parameters"]))
        seconds.setdefault(r["rule"], []).append(r["train_seconds"])
    seeds = sorted(set.intersection(*(set(s) for s in by_rule.values())))
    order = sorted(by_rule, key=lambda rule: RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER))
    first = rows[0]
    t = first["train"]
    title = SETTING_TITLES.get(first["setting"], first["setting"])
    lines = [
        f"### {title}: {first['backbone']}, {first['decoder']} head",
        "",
        f"{t['steps']} steps, batch {t['batch_size']}, crop {t['crop']}, lr {t['lr']}, loss {t.get('loss', 'ce')}, "
        f"rare crops {t.get('rare_crops', 1)}, select {t['select']}; {len(seeds)} paired seeds ({' '.join(map(str, seeds))}).",
        "",
        "| rule | mIoU, mean ± std | minus random, paired (ahead) | minus all modules, paired (ahead) | minus head only, paired (ahead) "
        "| trained parameters | train s per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule in order:
        values = [by_rule[rule][s] for s in seeds]
        mean = f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")
        counts = sorted(parameters[rule])
        count = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"
        lines.append(
            f"| {row_label(rule)} | {mean} | " + " | ".join(paired(by_rule, rule, p, seeds) for p in PARTNERS)
            + f" | {count} | {statistics.mean(seconds[rule]):.0f} |"
        )
    return [*lines, ""]


def render(records: list[dict[str, Any]], headers: list[dict[str, Any]]) -> list[str]:
    machines = sorted({h.get("machine", "?") for h in headers})
    minutes = sum(float(h.get("minutes", 0.0)) for h in headers)
    commands = sorted({h.get("command", "?").replace(f"--seeds {h['args']['seeds'][0]}", "--seeds S") if len(h.get("args", {}).get("seeds", [])) == 1
                       else h.get("command", "?") for h in headers})
    lines = measured_header("; ".join(machines), minutes, "\n".join(commands))
    loads = [h.get("load_start") for h in headers] + [h.get("load_end") for h in headers]
    loads = [float(x) for x in loads if x is not None]
    if loads:
        lines += [f"1-minute load average at the start and end of the {len(headers)} runs: {min(loads):.2f} to {max(loads):.2f} "
                  "(the machine was shared; mIoU does not depend on load, seconds do).", ""]
    for rows in groups(records).values():
        lines += table(rows)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path, help="bench_real.py --json files")
    parser.add_argument("--out", type=Path, help="page whose selection_study block is replaced (default: print)")
    args = parser.parse_args(argv)
    records, headers = load(args.json)
    if not records:
        print("no cegate source-only records in those files", file=sys.stderr)
        return 2
    lines = render(records, headers)
    if args.out:
        replace_block(args.out, "selection_study", lines, "# Selection study\n\n")
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
