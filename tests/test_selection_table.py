"""How benchmarks/selection_table.py reads the oracle study (issue 12): rank correlations of a rule's
scores with the single-module gains, over every module and over the modules the rule may pick."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from selection_table import rank_correlations  # noqa: E402

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


def test_the_papers_rule_may_pick_every_module() -> None:
    """The global top k draws from every block: both correlations are the same number."""
    run, gains = constructed_run("fisher")
    overall, allowed = rank_correlations(run, gains)
    assert overall == allowed < 0


def test_a_rule_without_scores_has_no_correlation() -> None:
    run, gains = constructed_run("random-cost")
    assert rank_correlations({**run, "scores": {}}, gains) is None
