"""How long library work tells a display what it is doing, without printing anything itself.

Two kinds of listener exist: a training reporter (`cegate_cli.train.reporter.TrainReporter`)
and a batch progress (`BatchProgress`, here) for mapping many scenes. Both also hear about
*phases*: the steps that take long before or between the ones with a progress bar (loading a
backbone, band statistics, Fisher scoring, loading a run). Without them a log showed nothing for
minutes and a user could not tell a slow machine from a hung one.

This module imports neither torch nor rasterio, so the command line can build its displays
without loading them (`cegate --help` stays fast).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cegate_cli.predict.batch import FileOutcome


@contextlib.contextmanager
def phase(listener: object | None, name: str) -> Iterator[None]:
    """Announce `name` to `listener` when it starts and, with its duration, when it ends.

    Any object with `phase_started(name)` / `phase_finished(name, seconds)` listens; others (a
    reporter written before phases existed, or None) are left alone. A phase that raises is not
    reported as finished (the error says what happened); `phase_abandoned(name)`, if the listener
    has it, lets it drop what it had pending for that phase.
    """
    started_hook = getattr(listener, "phase_started", None)
    if started_hook is not None:
        started_hook(name)
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        abandoned_hook = getattr(listener, "phase_abandoned", None)
        if abandoned_hook is not None:
            abandoned_hook(name)
        raise
    finished_hook = getattr(listener, "phase_finished", None)
    if finished_hook is not None:
        finished_hook(name, time.perf_counter() - started)


class BatchProgress:
    """Hooks for a progress display over many scenes; every method is a no-op here, override
    what you draw."""

    def phase_started(self, name: str) -> None:
        """A long step outside the scenes starts (e.g. loading the run)."""

    def phase_finished(self, name: str, seconds: float) -> None:
        """That step ended after `seconds`."""

    def phase_abandoned(self, name: str) -> None:
        """That step raised; the error reaches the user on its own."""

    def file_started(self, source: Path, index: int, total_files: int, tiles: int) -> None:
        """A scene starts; `tiles` model tiles will follow (0 when only vectorising)."""

    def tiles_done(self, count: int) -> None:
        """`count` more tiles of the current scene are finished."""

    def file_finished(self, outcome: FileOutcome) -> None:
        """A scene is done, skipped or failed."""
