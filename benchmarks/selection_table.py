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
import math
import statistics
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

from real_table import EARLIER_TRAIN, MODE_LABELS, MODE_SUFFIX, RULE_ORDER, SETTING_TITLES, mean_std, parameter_range, row_label
from report_block import study_header, write_or_print

BASELINES = {
    "pixel": "per-pixel Gaussian classifier (bands only)",
    "pixel+target": "the same, each domain standardised with its own statistics",
    "pixel-reference": "the same fitted on target labels",
    "majority": "majority class",
}
"""Rows without training that each table names beside the rules, on the same test pixels (the
last two only where the setting has a target domain)."""
PARTNERS = {"random": "random", "random-cost": "random among fisher-cost's blocks", "all": "all modules", "none": "head only"}
"""The baselines every rule is paired with (those the runs have): the same count drawn at random (from
every block, or from fisher-cost's), every module, the head alone."""
VARIANT_PARTNERS = {"fisher": "the paper's rule"}
"""Where a table holds none of PARTNERS (fisher and its variants run alone, e.g. rescoring under
self-training), each rule is paired with the rule the variants change."""


def load(paths: list[Path], mode: str = "source-only") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run headers of bench_real.py --json files and their records the tables compare: the
    cegate runs of `mode`, named by their rule (so "fisher+tstats" pairs with "none+tstats" as
    "fisher" with "none"), the reference runs trained on target labels (the headroom), and the
    baselines."""
    records, headers = [], []
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        headers.append(data)
        trained_s = {run_key(r): r["train_seconds"] for r in data["records"] if r.get("mode") == "source-only"}
        for r in data["records"]:
            if r.get("rule") and r.get("mode") == mode:
                row = r["row"].removesuffix(MODE_SUFFIX[mode])
                seconds = trained_s.get(run_key({**r, "row": row}), r["train_seconds"]) if mode == "target-stats" else r["train_seconds"]
                records.append({**r, "row": row, "train_seconds": seconds})  # target-stats: the source-only run it rescores
            elif (r.get("rule") and r.get("mode") == "reference") or r["row"] in BASELINES:
                records.append(r)
    return records, headers


def run_key(r: dict[str, Any]) -> str:
    return json.dumps([r["setting"], r["row"], r["seed"], r["backbone"], r["decoder"], r["train"]], sort_keys=True)


SELECT_FREE = ("none", "all")
"""Rules whose training ignores --select (the head alone; every module): their runs at one select
pair with the rules run at another, so a study of a larger select need not rerun them."""


def group_key(r: dict[str, Any], select: bool = True) -> str:
    train = r["train"] if select else {k: v for k, v in r["train"].items() if k != "select"}
    return json.dumps([r["setting"], r["backbone"], r["decoder"], train], sort_keys=True)


def groups(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The tables: runs grouped by setting, backbone, head and training settings. The head-alone and
    all-modules runs join every group they differ from only in --select (after its own runs, so a
    table's header names the select its rules were run at)."""
    by: dict[str, list[dict[str, Any]]] = {}
    select_free = []
    for r in records:
        if r["row"] in BASELINES:
            continue
        if r["row"] in SELECT_FREE:
            select_free.append(r)
            continue
        by.setdefault(group_key(r), []).append(r)
    for r in select_free:
        homes = [key for key, rows in by.items() if group_key(rows[0], select=False) == group_key(r, select=False)]
        for key in homes or [group_key(r)]:
            by.setdefault(key, []).append(r)
    return by


def differences(by_rule: dict[str, dict[int, float]], rule: str, partner: str, seeds: list[int]) -> list[float]:
    """`rule`'s mIoU minus `partner`'s, seed by seed: the paired difference every comparison reads."""
    return [by_rule[rule][s] - by_rule[partner][s] for s in seeds]


def paired(by_rule: dict[str, dict[int, float]], rule: str, partner: str, seeds: list[int]) -> str:
    if partner not in by_rule or partner == rule:
        return "–"
    diffs = differences(by_rule, rule, partner, seeds)
    spread = f" ± {statistics.stdev(diffs):.3f}" if len(diffs) > 1 else ""
    return f"{statistics.mean(diffs):+.3f}{spread} ({sum(d > 0 for d in diffs)}/{len(diffs)})"


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation (average ranks for ties): does a rule order the modules as the oracle does?"""
    import numpy as np

    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        result = np.empty(len(values))
        sorted_values = np.asarray(values)[order]
        i = 0
        while i < len(values):
            j = i
            while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
                j += 1
            result[order[i : j + 1]] = (i + j) / 2
            i = j + 1
        return result

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def oracle_summary(by: dict[tuple[str, int], dict[str, Any]], seed: int) -> str:
    """One seed's oracle runs in a line: the head alone, the best and worst single module, the oracle's set."""
    head = by[("none", seed)]["miou"]
    singles = sorted(((r["miou"], row[len("only ") :]) for (row, s), r in by.items() if s == seed and row.startswith("only ")), reverse=True)
    helped = sum(miou > head for miou, _ in singles)
    oracle = by[("oracle", seed)]
    return (
        f"- seed {seed}: head alone {head:.3f}; single modules from {singles[-1][0]:.3f} ({singles[-1][1]}) to {singles[0][0]:.3f} "
        f"({singles[0][1]}), {helped} of {len(singles)} above the head alone; the oracle's set ({', '.join(oracle['selected'])}) "
        f"{oracle['miou']:.3f}"
    )


def candidates(run: dict[str, Any], modules: list[str]) -> list[str]:
    """The modules `run`'s rule may pick: fisher-cost and random-cost draw only from the upper blocks
    (cegate_cli.toolbox.fisher.within_cost_budget, the one owner of that cut); every other rule from all."""
    from cegate_cli.toolbox.fisher import COST_BUDGET_RULES, within_cost_budget

    if run["rule"] not in COST_BUDGET_RULES:
        return modules
    from cegate_cli.toolbox.module_key import ModuleKey

    allowed = within_cost_budget([ModuleKey.parse(name) for name in modules], int(run["select_count"]), int(run["depth"]))
    return [str(key) for key in allowed]


def rank_correlations(run: dict[str, Any], gains: dict[str, float]) -> tuple[float | None, float] | None:
    """Spearman between a run's scores and the single-module gains: over every module, and over the
    modules its rule may pick. The second is what tells whether fisher-cost's scores choose well
    within its blocks. The first needs a score for every module: fisher-cost runs of earlier
    versions scored them all (their scores are then the paper's rule's); today's score only the
    modules they may pick, so for them it is None (not measured), never a figure over fewer modules."""
    if not run.get("scores") or not gains:
        return None
    modules = sorted(set(gains) & set(run["scores"]))
    allowed = candidates(run, modules)
    overall = spearman([run["scores"][k] for k in modules], [gains[k] for k in modules]) if set(gains) <= set(run["scores"]) else None
    return overall, spearman([run["scores"][k] for k in allowed], [gains[k] for k in allowed])


def mean_and_seeds(values: list[float]) -> str:
    """ "+0.38 (+0.38, +0.12)": the mean and each seed's value, or "–" where nothing was measured."""
    return (f"{statistics.mean(values):+.2f} (" + ", ".join(f"{v:+.2f}" for v in values) + ")") if values else "–"


def single_gains(by: dict[tuple[str, int], dict[str, Any]], seed: int) -> dict[str, float]:
    """One seed's oracle gains: each single module's mIoU minus the head alone's, by module name."""
    head = by[("none", seed)]["miou"]
    return {row[len("only ") :]: r["miou"] - head for (row, s), r in by.items() if s == seed and row.startswith("only ")}


def gain_consistency(gains: dict[int, dict[str, float]], cost_run: dict[str, Any] | None) -> str:
    """How well one seed's single-module gains predict another's: the mean Spearman over every pair of
    seeds (`gains`: each seed's `single_gains`), over every module and over fisher-cost's blocks
    (those `cost_run`, a fisher-cost run, may pick). It measures how noisy the gains are: a
    score that ordered the modules by their true mean gain would correlate with one seed's gains at
    about the square root of this (two seeds share the true order, each with its own noise), which
    is the ceiling the rank-correlation column is read against."""
    seeds = sorted(gains)
    if len(seeds) < 2:
        return ""
    modules = sorted(set.intersection(*(set(g) for g in gains.values())))
    groups = [("every module", modules)] + ([("fisher-cost's blocks", candidates(cost_run, modules))] if cost_run else [])
    parts = []
    for label, keys in groups:
        pairs = [spearman([gains[a][k] for k in keys], [gains[b][k] for k in keys]) for a, b in combinations(seeds, 2)]
        mean = statistics.mean(pairs)
        ceiling = f"; ceiling about {math.sqrt(mean):+.2f}" if mean > 0 else ""
        parts.append(f"{mean:+.2f} over {label} (pairs from {min(pairs):+.2f} to {max(pairs):+.2f}{ceiling})")
    return (
        f"How well one seed's single-module gains predict another seed's (Spearman, mean over the {len(seeds) * (len(seeds) - 1) // 2} "
        f"pairs of seeds): {'; '.join(parts)}. The gains are this noisy; a score that ordered the modules by their true mean "
        "gain would correlate with one seed's gains at about the square root (the ceiling named) of this."
    )


def gain_means(gains_by_seed: dict[int, dict[str, float]]) -> str:
    """The single-module gains (each seed's `single_gains`) averaged by kind and by block over the
    seeds: where the modules that help sit, which is what a rule has to find (and what fisher-cost's
    cut assumes)."""
    from cegate_cli.toolbox.module_key import ModuleKey

    gains = [(*ModuleKey.parse(name), gain) for seed_gains in gains_by_seed.values() for name, gain in seed_gains.items()]
    kinds = list(dict.fromkeys(kind for kind, _, _ in gains))
    blocks = sorted({layer for _, layer, _ in gains})
    by_kind = []
    for kind in kinds:
        values = [g for k, _, g in gains if k == kind]
        by_kind.append(f"{kind} {statistics.mean(values):+.3f} (above the head in {sum(v > 0 for v in values)} of {len(values)} runs)")
    by_block = " ".join(f"{statistics.mean([g for _, layer, g in gains if layer == block]):+.3f}" for block in blocks)
    return f"Mean single-module gain by kind: {', '.join(by_kind)}; by block {blocks[0]}-{blocks[-1]}: {by_block}."


def oracle_lines(rows: list[dict[str, Any]], rules: list[str], seeds: list[int]) -> list[str]:
    """Regret against the oracle's set and rank correlation of each rule's scores with the gains."""
    by = {(r["row"], r["seed"]): r for r in rows}
    oracle_seeds = [s for s in seeds if ("oracle", s) in by and ("none", s) in by]
    if not oracle_seeds:
        return []
    gains = {seed: single_gains(by, seed) for seed in oracle_seeds}
    cost_run = next((by[("fisher-cost", s)] for s in oracle_seeds if ("fisher-cost", s) in by), None)
    lines = [
        "",
        f"Oracle study on {len(oracle_seeds)} seed(s) ({' '.join(map(str, oracle_seeds))}): the head trained with each single "
        "module; gain = its mIoU minus the head alone's; the oracle's set = the largest gains, as many modules as the rules "
        "select, trained together. Regret = oracle's set minus the rule (paired; lower is better); rank correlation = "
        "Spearman between the rule's scores and the single-module gains (rules that score), over every module and over "
        "the modules the rule may pick (fisher-cost: the upper half of the blocks).",
        "",
        *[oracle_summary(by, seed) for seed in oracle_seeds],
        "",
        gain_means(gains),
        "",
        *([consistency, ""] if (consistency := gain_consistency(gains, cost_run)) else []),
        "| rule | regret, paired (rule behind the oracle on) | rank correlation with the gains, mean (per seed) | "
        "the same among the modules the rule may pick | selected modules in the oracle's set, mean |",
        "|---|---|---|---|---|",
    ]
    for rule in rules:
        regrets, correlations, allowed_correlations, overlaps = [], [], [], []
        for seed in oracle_seeds:
            if (rule, seed) not in by:
                continue
            run, oracle = by[(rule, seed)], by[("oracle", seed)]
            regrets.append(oracle["miou"] - run["miou"])
            both = rank_correlations(run, gains[seed])
            if both:
                if both[0] is not None:
                    correlations.append(both[0])
                allowed_correlations.append(both[1])
            if run.get("selected"):
                overlaps.append(len(set(run["selected"]) & set(oracle["selected"])) / max(1, len(oracle["selected"])))
        if not regrets:
            continue
        spread = f" ± {statistics.stdev(regrets):.3f}" if len(regrets) > 1 else ""
        overlap = f"{statistics.mean(overlaps):.0%}" if overlaps else "–"
        lines.append(
            f"| {row_label(rule)} | {statistics.mean(regrets):+.3f}{spread} ({sum(r > 0 for r in regrets)}/{len(regrets)}) | "
            f"{mean_and_seeds(correlations)} | {mean_and_seeds(allowed_correlations)} | {overlap} |"
        )
    return lines


T_975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
"""Student's t, two-sided 95%, for 1..30 degrees of freedom (beyond: 1.96); a table, so the
benchmarks need no statistics package."""


def within_noise(diffs: list[float]) -> bool:
    """True when a paired difference over seeds is a tie: its 95% t-interval contains zero."""
    freedom = len(diffs) - 1
    if freedom < 1:
        return True
    t = T_975[freedom - 1] if freedom <= len(T_975) else 1.960
    return abs(statistics.mean(diffs)) <= t * statistics.stdev(diffs) / math.sqrt(len(diffs))


DEFAULT_TEST_PARTNERS = ("random", "all")
"""Issue 12's test for the default rule: ahead of random selection of the same size and of every
module, each on more than half of the paired seeds."""


def default_test(by_rule: dict[str, dict[int, float]], seeds: list[int]) -> str | None:
    """The line that says which rules pass the test for a default (`DEFAULT_TEST_PARTNERS`), with the
    seeds each is ahead on (the count decides, not the mean); when none passes, the rule closest to
    passing (most seeds ahead of its harder partner). None when the table lacks a partner."""
    if not seeds or any(p not in by_rule for p in DEFAULT_TEST_PARTNERS):
        return None
    compared = [r for r in by_rule if r != "all" and not r.endswith(MODE_SUFFIX["reference"])]
    to_all = {r: differences(by_rule, r, "all", seeds) for r in compared}
    ahead = {
        rule: [sum(d > 0 for d in differences(by_rule, rule, p, seeds)) for p in DEFAULT_TEST_PARTNERS]
        for rule in compared
        if rule not in DEFAULT_TEST_PARTNERS
    }
    if not ahead:
        return None
    passed = [rule for rule, counts in ahead.items() if all(2 * c > len(seeds) for c in counts)]
    closest = max(ahead, key=lambda rule: (min(ahead[rule]), sum(ahead[rule]), statistics.mean(by_rule[rule][s] for s in seeds)))

    def named(rule: str) -> str:
        random_seeds, all_seeds = ahead[rule]
        return f"{row_label(rule)} (ahead of random selection on {random_seeds} of {len(seeds)} seeds, of all modules on {all_seeds})"

    head = "Test for a default (ahead of random selection of the same size and of all modules, each on more than half the seeds): "
    verdict = f"passed by {'; '.join(named(r) for r in passed)}." if passed else f"passed by no rule; closest: {named(closest)}."
    tied = [r for r in compared if within_noise(to_all[r])]
    parts = [
        f" Within the seeds' noise of all modules (the paired difference's 95% interval contains zero): {'; '.join(row_label(r) for r in tied) or 'no rule'}."
    ]
    for word, sign in (("ahead of", 1), ("behind", -1)):
        beyond = [r for r in compared if r not in tied and sign * statistics.mean(to_all[r]) > 0]
        if beyond:
            parts.append(f" {word.capitalize()} it beyond that noise: {'; '.join(row_label(r) for r in beyond)}.")
    noise = "".join(parts)
    return head + verdict + noise


def later_options(train: dict[str, Any]) -> str:
    """ ", uncalibrated, 16 validation crops" (how the first studies trained) or ", calibrated, 64
    validation crops" (today's defaults): options bench_real records only where they differ from
    real_table.EARLIER_TRAIN, named in the header so a reader can tell the two apart."""
    options = {**EARLIER_TRAIN, **train}
    words = ["calibrated" if options["calibrate"] else "uncalibrated", f"{options['val_crops']} validation crops"]
    if options["class_weight_power"] != EARLIER_TRAIN["class_weight_power"]:
        words.append(f"class-weight power {options['class_weight_power']}")
    return "".join(f", {w}" for w in words)


def table(rows: list[dict[str, Any]]) -> list[str]:
    oracle_rows = [r for r in rows if r["row"].startswith("only ") or r["row"] == "oracle"]
    first_runs: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        if r not in oracle_rows:
            first_runs.setdefault((r["row"], r["seed"]), r)  # the oracle study reruns the head alone: the study's own run counts
    rows = list(first_runs.values())  # the oracle is costly, run on fewer seeds: its own section
    by_rule: dict[str, dict[int, float]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_rule.setdefault(r["row"], {})[r["seed"]] = r["miou"]
        runs.setdefault(r["row"], []).append(r)
    seeds = sorted(set.intersection(*(set(s) for s in by_rule.values())))
    order = sorted(by_rule, key=lambda rule: RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER))
    partners = [p for p in PARTNERS if p in by_rule] or [p for p in VARIANT_PARTNERS if p in by_rule]
    partner_labels = {**PARTNERS, **VARIANT_PARTNERS}
    first = rows[0]
    t = first["train"]
    title = SETTING_TITLES.get(first["setting"], first["setting"])
    mode = next(r["mode"] for r in rows if r["mode"] != "reference")
    scored_as = "" if mode == "source-only" else f" ({MODE_LABELS[mode].format('each rule')})"
    lines = [
        f"### {title}: {first['backbone']}, {first['decoder']} head{scored_as}",
        "",
        f"{t['steps']} steps, batch {t['batch_size']}, crop {t['crop']}, lr {t['lr']}, loss {t.get('loss', 'ce')}, "
        f"rare crops {t.get('rare_crops', 1)}, select {t['select']}{later_options(t)}; {len(seeds)} paired seeds ({' '.join(map(str, seeds))}).",
        "",
        "| "
        + " | ".join(["rule", "mIoU, mean ± std", *(f"minus {partner_labels[p]}, paired (ahead)" for p in partners), "trained parameters", "train s per run"])
        + " |",
        "|" + "---|" * (4 + len(partners)),
    ]
    for rule in order:
        cells = [
            row_label(rule),
            mean_std([by_rule[rule][s] for s in seeds]),
            *(paired(by_rule, rule, p, seeds) for p in partners),
            parameter_range(runs[rule]),
            f"{statistics.mean(r['train_seconds'] for r in runs[rule]):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if verdict := default_test(by_rule, seeds):
        lines += ["", verdict]
    shared = [rule for rule in order if rule not in ("oracle", "none") and not rule.endswith(MODE_SUFFIX["reference"])]
    lines += oracle_lines(rows + oracle_rows, shared, seeds)
    return [*lines, ""]


def baseline_line(records: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """The untrained baselines of the same setting and seeds, for scale."""
    seeds = {r["seed"] for r in rows}
    parts = []
    for row, label in BASELINES.items():
        values = {r["seed"]: r["miou"] for r in records if r["row"] == row and r["setting"] == rows[0]["setting"] and r["seed"] in seeds}
        if values:
            v = list(values.values())
            parts.append(f"{label} {statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else ""))
    return [f"Baselines on the same test pixels and seeds: {'; '.join(parts)}.", ""] if parts else []


def render(records: list[dict[str, Any]], headers: list[dict[str, Any]], options: str = "") -> list[str]:
    seeds = sorted({r["seed"] for r in records})
    lines = study_header(headers, seeds, f"python benchmarks/selection_table.py <those --json files>{options} --out docs/benchmarks.md")
    for rows in groups(records).values():
        lines += table(rows)
        lines += baseline_line(records, rows)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path, help="bench_real.py --json files")
    parser.add_argument("--out", type=Path, help="page whose generated block is replaced (default: print)")
    parser.add_argument("--decoder", default=None, help="only the runs with this head (files may hold runs of several)")
    parser.add_argument("--settings", nargs="+", default=None, help="only these settings (files may hold several)")
    parser.add_argument(
        "--rules", nargs="+", default=None, help="only these rules (e.g. the pair run on more seeds than the rest; the table uses the seeds every rule shares)"
    )
    parser.add_argument("--select", default=None, help="only the runs at this --select (e.g. 0.5), with the head-alone and all-modules runs, which ignore it")
    parser.add_argument(
        "--mode",
        choices=[m for m in MODE_SUFFIX if m != "reference"],
        default="source-only",
        help="the runs compared: source-only; target-stats (source-only, the target read with its own "
        "statistics); self-training. Reference runs (trained on target labels) join as the headroom",
    )
    parser.add_argument("--block", default="selection_study", help="name of that block (<!-- NAME:begin --> ... <!-- NAME:end -->)")
    args = parser.parse_args(argv)
    records, headers = load(args.json, args.mode)
    if args.decoder:
        records = [r for r in records if r.get("rule") is None or r["decoder"] == args.decoder]
    if args.settings:
        records = [r for r in records if r["setting"] in args.settings]
    if args.rules:
        records = [r for r in records if r.get("rule") is None or r["row"] in args.rules]
    if args.select:
        records = [r for r in records if r.get("rule") is None or r["row"] in SELECT_FREE or str(r["train"]["select"]) == args.select]
    if not any(r.get("rule") and r["mode"] == args.mode for r in records):
        print(f"no cegate {args.mode} records in those files", file=sys.stderr)
        return 2
    options = "".join(
        [
            f" --decoder {args.decoder}" if args.decoder else "",
            f" --settings {' '.join(args.settings)}" if args.settings else "",
            f" --rules {' '.join(args.rules)}" if args.rules else "",
            f" --select {args.select}" if args.select else "",
            f" --mode {args.mode}" if args.mode != "source-only" else "",
            f" --block {args.block}" if args.block != "selection_study" else "",
        ]
    )
    write_or_print(args.out, args.block, render(records, headers, options), "# Selection study\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
