"""The training progress line, as a user sees it in a terminal and in a log file."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from cegate_cli.commands.train_progress import RichTrainReporter


def _render(width: int) -> str:
    out = io.StringIO()
    reporter = RichTrainReporter(Console(file=out, width=width, force_terminal=False, highlight=False))
    reporter.start(total_steps=300, first_step=0)
    for step in (100, 200, 300):  # a few updates apart in time, so that the it/s figure is shown too
        time.sleep(0.02)
        reporter.step(step, loss=0.0731, lr=1.3e-5)
    reporter.validation(300, 0.9921)
    reporter.finish()
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 100])
def test_a_log_file_width_keeps_every_number_whole(width: int) -> None:
    """80 columns is what rich uses when stderr is a file or a CI log: nothing may be cut to "…"."""
    text = _render(width)
    assert "…" not in text
    assert "300/300" in text and "loss 0.073" in text and "it/s" in text and "val mIoU 0.992" in text and "ETA" in text


def test_a_wide_terminal_also_shows_the_bar_and_learning_rate() -> None:
    text = _render(160)
    assert "…" not in text
    assert "lr 1.3e-05" in text and "━" in text and "300/300" in text
