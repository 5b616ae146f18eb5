"""How benchmarks/selection_table.py reads the oracle study (issue 12): rank correlations of a rule's
scores with the single-module gains, over every module and over the modules the rule may pick."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from selection_table import T_975, default_test, gain_consistency, gain_means, groups, rank_correlations, single_gains, within_noise  # noqa: E402

KINDS = ("lora", "adapter", "earth")


def constructed_run(rule: str) -> tuple[dict, dict[str, float]]:
    """Six blocks, three kinds: the scores order the upper half (blocks 3-5) exactly as the gains do;
    the lower half (blocks 0-2) has the largest gains and the smallest scores."""
    scores, gains = {}, {}
    for layer in range(6):
        for i, kind in enumerate(KINDS):
            name, rank = f"{kind}@{layer}", layer * 3 + i
            scores[name] = float(rank)
            gains[name] = float(rank) if layer >= 3 else float(100 - rank)
    return {"rule": rule, "scores": scores, "select_count": 5, "depth": 6}, gains


def test_fisher_cost_is_judged_on_the_blocks_it_may_pick() -> None:
    """fisher-cost may pick only blocks 3-5 (within_cost_budget), where its scores order the modules
    exactly as the gains: +1 there, far less over all 18 modules."""
    run, gains = constructed_run("fisher-cost")
    overall, allowed = rank_correlations(run, gains)
    assert allowed == pytest.approx(1.0)
    assert overall < 0


def test_a_fisher_cost_run_that_scored_only_its_blocks_has_no_correlation_over_every_module() -> None:
    """fisher-cost scores only the blocks it may pick (3-5): the correlation over every module is not
    measured (None, shown as "–"), not taken over the scored modules and labelled as every module."""
    run, gains = constructed_run("fisher-cost")
    scored = {name: value for name, value in run["scores"].items() if int(name.split("@")[1]) >= 3}
    overall, allowed = rank_correlations({**run, "scores": scored}, gains)
    assert overall is None and allowed == pytest.approx(1.0)


def test_the_papers_rule_may_pick_every_module() -> None:
    """The global top k draws from every block: both correlations are the same number."""
    run, gains = constructed_run("fisher")
    overall, allowed = rank_correlations(run, gains)
    assert overall == allowed < 0


def test_a_rule_without_scores_has_no_correlation() -> None:
    run, gains = constructed_run("random-cost")
    assert rank_correlations({**run, "scores": {}}, gains) is None


def oracle_rows(seed: int, gains: dict[str, float]) -> dict[tuple[str, int], dict]:
    """One seed of an oracle study as selection_table indexes it: the head alone and each single module."""
    rows = {("none", seed): {"miou": 0.6}}
    rows.update({(f"only {name}", seed): {"miou": 0.6 + gain} for name, gain in gains.items()})
    return rows


def seed_gains(*per_seed: dict[str, float]) -> dict[int, dict[str, float]]:
    """Each seed's gains as selection_table.single_gains reads them back from that seed's oracle rows."""
    by: dict[tuple[str, int], dict] = {}
    for seed, gains in enumerate(per_seed):
        by.update(oracle_rows(seed, gains))
    return {seed: single_gains(by, seed) for seed in range(len(per_seed))}


def test_seeds_that_agree_on_the_gains_give_a_ceiling_of_one() -> None:
    """Two seeds with the same order of gains: +1.00 over every module and +1.00 as the ceiling; a
    third seed with the order reversed pulls the mean of the three pairs down to -0.33."""
    _, gains = constructed_run("fisher")
    twice, reversed_ = {k: 2 * v for k, v in gains.items()}, {k: -v for k, v in gains.items()}
    assert "+1.00 over every module (pairs from +1.00 to +1.00; ceiling about +1.00)" in gain_consistency(seed_gains(gains, twice), None)
    line = gain_consistency(seed_gains(gains, twice, reversed_), None)
    assert "-0.33 over every module (pairs from -1.00 to +1.00)" in line and "ceiling about" not in line
    assert gain_consistency(seed_gains(gains), None) == ""


def test_gains_are_averaged_by_kind_and_by_block() -> None:
    """Gains of +0.01 in block 0 and +0.03 in block 1 for every kind, over two seeds."""
    gains = {f"{kind}@{layer}": 0.01 + 0.02 * layer for kind in KINDS for layer in (0, 1)}
    line = gain_means(seed_gains(gains, gains))
    assert "lora +0.020 (above the head in 4 of 4 runs), adapter +0.020" in line
    assert line.endswith("by block 0-1: +0.010 +0.030.")


def study_run(row: str, seed: int, select: str, steps: int = 300) -> dict:
    """One source-only run record of bench_real.py as selection_table.load hands it on."""
    return {
        "row": row,
        "seed": seed,
        "setting": "naip",
        "backbone": "galileo-nano",
        "decoder": "linear-pixel",
        "mode": "source-only",
        "train": {"steps": steps, "select": select},
    }


def test_the_head_alone_and_all_modules_pair_with_rules_run_at_another_select() -> None:
    """A study of select 0.5 runs only the rules select changes: the head-alone and all-modules runs of
    the select-0.25 study join its table, and that table is still headed by its own select."""
    quarter = [study_run(row, 0, "0.25") for row in ("none", "all", "random", "fisher-cost")]
    half = [study_run(row, 0, "0.5") for row in ("random", "fisher-cost")]
    tables = list(groups(quarter + half).values())
    assert [sorted(r["row"] for r in rows) for rows in tables] == [["all", "fisher-cost", "none", "random"]] * 2
    assert [rows[0]["train"]["select"] for rows in tables] == ["0.25", "0.5"]


def test_runs_that_differ_in_more_than_select_stay_apart() -> None:
    """A different number of steps changes the head-alone and all-modules runs too: no pairing."""
    tables = list(groups([study_run("none", 0, "0.25", steps=100), study_run("fisher-cost", 0, "0.5")]).values())
    assert [[r["row"] for r in rows] for rows in tables] == [["fisher-cost"], ["none"]]


def test_the_default_test_counts_seeds_ahead_of_both_partners() -> None:
    """fisher-cost is ahead of random and of all modules on 2 of 3 seeds: it passes. The paper's rule
    has the larger mean (one big seed) but is ahead of all modules on 1 of 3: it does not."""
    by_rule = {
        "random": {0: 0.60, 1: 0.60, 2: 0.60},
        "all": {0: 0.61, 1: 0.61, 2: 0.61},
        "fisher-cost": {0: 0.62, 1: 0.62, 2: 0.59},
        "fisher": {0: 0.90, 1: 0.605, 2: 0.605},
    }
    line = default_test(by_rule, [0, 1, 2])
    assert "passed by Fisher, upper half of the blocks only (fisher-cost) (ahead of random selection on 2 of 3 seeds, of all modules on 2)." in line
    assert "global top k" not in line.split("Within")[0]


def test_the_default_test_names_the_closest_rule_when_none_passes() -> None:
    by_rule = {"random": {0: 0.6, 1: 0.6}, "all": {0: 0.7, 1: 0.7}, "fisher-cost": {0: 0.65, 1: 0.71}, "none": {0: 0.5, 1: 0.5}}
    line = default_test(by_rule, [0, 1])
    assert (
        "passed by no rule; closest: Fisher, upper half of the blocks only (fisher-cost) (ahead of random selection on 2 of 2 seeds, of all modules on 1)."
        in line
    )
    assert line.endswith(
        "Within the seeds' noise of all modules (the paired difference's 95% interval contains zero): "
        "Fisher, upper half of the blocks only (fisher-cost). Behind it beyond that noise: random selection, same k; frozen backbone + head."
    )
    assert default_test({k: v for k, v in by_rule.items() if k != "all"}, [0, 1]) is None


def test_the_t_table_matches_students_t() -> None:
    stats = pytest.importorskip("scipy.stats")
    assert [round(float(stats.t.ppf(0.975, df)), 3) for df in range(1, 31)] == list(T_975)


def test_a_tie_is_a_paired_difference_whose_interval_contains_zero() -> None:
    """Mean -0.007, sd 0.013 over 10 seeds: half-width 2.262 * 0.013 / sqrt(10) = 0.0093, a tie; the
    same mean with sd 0.005 (half-width 0.0036) is not."""
    noisy = [-0.007 + 0.013 * z for z in (1.5, -1.5, 1, -1, 0.5, -0.5, 0.8, -0.8, 0, 0)]
    steady = [-0.007 + 0.005 * z for z in (1.5, -1.5, 1, -1, 0.5, -0.5, 0.8, -0.8, 0, 0)]
    assert within_noise(noisy) and not within_noise(steady)
    assert within_noise([0.1])  # one seed says nothing


def test_a_rule_clearly_above_all_modules_is_named_ahead_not_behind() -> None:
    by_rule = {"random": {0: 0.6, 1: 0.6, 2: 0.6}, "all": {0: 0.6, 1: 0.6, 2: 0.6}, "fisher-cost": {0: 0.70, 1: 0.71, 2: 0.70}}
    assert default_test(by_rule, [0, 1, 2]).endswith(
        "Within the seeds' noise of all modules (the paired difference's 95% interval "
        "contains zero): random selection, same k. Ahead of it beyond that noise: Fisher, upper half of the blocks only (fisher-cost)."
    )
