"""The collapse warning's measure: pooled class shares, so one batch's ground is not a drift."""

from __future__ import annotations

import pytest

from cegate_cli.train.pseudo import DRIFT_WINDOW, pooled_drift


def test_batches_of_different_ground_are_no_drift() -> None:
    """A batch all in the sea, the next all on land: one record each swings fully, the pool does not."""
    sea, land = [0.0, 1.0], [1.0, 0.0]
    history = [sea if i % 2 else land for i in range(4 * DRIFT_WINDOW)]
    assert all(0.5 * sum(abs(a - b) for a, b in zip(x, y)) == 1.0 for x, y in zip(history, history[1:]))
    drift = pooled_drift(history)
    assert drift is not None and drift <= 1.0 / DRIFT_WINDOW  # an odd window leaves one batch unpaired


def test_a_steady_move_onto_one_class_is_drift() -> None:
    history = [[1.0 - i / 20, i / 20] for i in range(20)]
    drift = pooled_drift(history)
    assert drift is not None and drift > 0.5
    first = sum(1.0 - i / 20 for i in range(DRIFT_WINDOW)) / DRIFT_WINDOW
    last = sum(1.0 - i / 20 for i in range(20 - DRIFT_WINDOW, 20)) / DRIFT_WINDOW
    assert drift == pytest.approx(first - last)


def test_too_few_records_are_not_judged() -> None:
    assert pooled_drift([[1.0, 0.0]] * (2 * DRIFT_WINDOW - 1)) is None
    assert pooled_drift([[1.0, 0.0]] * (2 * DRIFT_WINDOW)) == 0.0
