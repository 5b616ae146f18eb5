"""How much a command says on stderr, and in which form.

- On a terminal: live progress bars (rich), with a line for each long phase above them.
- Anywhere else (a log file, a pipe, a CI job): plain lines at a steady interval
  (plain_progress.py); a live display would draw nothing there until it ends.
- Phases (loading a backbone, band statistics, Fisher scoring, ...) that last 2 s or more get a
  line when they start (printed while they run) and one with their duration when they end.
- `--quiet`: errors, warnings and the result only. `--verbose`: also the thread and device
  choices, the top Fisher scores, every phase however short, and progress lines more often.

The result itself (tables, paths, `--json`) goes to stdout whatever the level.
Also here: `--threads`, applied before the command computes anything (cegate_cli/threads.py).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from cegate_cli.commands.console import stderr
from cegate_cli.errors import InputError

PROGRESS_SECONDS_ENV = "CEGATE_PROGRESS_SECONDS"
INTERVAL_SECONDS = 15.0
"""Seconds between plain progress lines: often enough that a log shows a run is moving, seldom
enough that a 300-step run writes a few dozen lines, not 300."""
VERBOSE_INTERVAL_SECONDS = 5.0


class Level(IntEnum):
    QUIET = 0
    NORMAL = 1
    VERBOSE = 2


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors, warnings and the result: no progress.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Also thread and device choices, Fisher scores, every phase, and progress lines every 5 s.")]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        help="CPU threads to compute with (default: the cores free now, sampled for 0.3 s, the 1-minute load where that cannot be read; or OMP_NUM_THREADS if set).",
        show_default=False,
    ),
]


def phase_delay(level: Level, environ: Any = os.environ) -> float:
    """How long a phase runs before it gets its lines: 2 s; none with --verbose, and at most
    CEGATE_PROGRESS_SECONDS when that is set (0: every phase, at once)."""
    from cegate_cli.commands.plain_progress import PHASE_DELAY_SECONDS

    if environ.get(PROGRESS_SECONDS_ENV, "").strip():
        return min(PHASE_DELAY_SECONDS, progress_interval(level, environ))
    return 0.0 if level >= Level.VERBOSE else PHASE_DELAY_SECONDS


def progress_interval(level: Level, environ: Any = os.environ) -> float:
    """Seconds between plain progress lines: CEGATE_PROGRESS_SECONDS if set (0 = every step)."""
    text = environ.get(PROGRESS_SECONDS_ENV, "").strip()
    if not text:
        return VERBOSE_INTERVAL_SECONDS if level >= Level.VERBOSE else INTERVAL_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise InputError(f"{PROGRESS_SECONDS_ENV}={text!r}: give the seconds between progress lines as a number >= 0 (default {INTERVAL_SECONDS:g})")
    return value


@dataclass(frozen=True)
class Feedback:
    level: Level = Level.NORMAL
    console: Console = field(default=stderr, compare=False)

    @classmethod
    def from_flags(cls, quiet: bool, verbose: bool) -> Feedback:
        if quiet and verbose:
            raise InputError("--quiet and --verbose: choose one")
        return cls(Level.QUIET if quiet else Level.VERBOSE if verbose else Level.NORMAL)

    @property
    def live(self) -> bool:
        """Draw live bars (a terminal), or write plain lines (anything else)."""
        return self.console.is_terminal

    def say(self, text: str) -> None:
        """Hints and summaries on stderr (not with --quiet)."""
        if self.level >= Level.NORMAL:
            self.console.print(text, markup=False, highlight=False)

    def detail(self, text: str) -> None:
        """What only --verbose shows."""
        if self.level >= Level.VERBOSE:
            self.console.print(text, markup=False, highlight=False)

    def warn(self, text: str) -> None:
        """Warnings and errors: shown at every level."""
        self.console.print(text, markup=False, highlight=False)

    def train_reporter(self) -> Any:
        """A `cegate_cli.train.reporter.TrainReporter` for this level and stderr."""
        from cegate_cli.commands.plain_progress import PlainTrainReporter, QuietTrainReporter
        from cegate_cli.commands.train_progress import RichTrainReporter

        verbose = self.level >= Level.VERBOSE
        if self.level == Level.QUIET:
            return QuietTrainReporter(self.console)
        reporter: Any = (
            RichTrainReporter(self.console, verbose=verbose) if self.live else PlainTrainReporter(self.console, progress_interval(self.level), verbose=verbose)
        )
        reporter.phase_delay = phase_delay(self.level)
        return reporter

    def batch_progress(self) -> Any:
        """A `cegate_cli.infra.progress.BatchProgress` (also a context manager) for this level and stderr."""
        from cegate_cli.commands.map_progress import RichBatchProgress
        from cegate_cli.commands.plain_progress import PlainBatchProgress, QuietBatchProgress

        if self.level == Level.QUIET:
            return QuietBatchProgress()
        progress: Any = RichBatchProgress(self.console) if self.live else PlainBatchProgress(self.console, progress_interval(self.level))
        progress.phase_delay = phase_delay(self.level)
        return progress

    def threads(self, requested: int | None) -> None:
        """Compute with `requested` threads, or the cores free now; --verbose says which and why."""
        from cegate_cli.infra.threads import apply_threads, choose_threads

        choice = choose_threads(requested)
        apply_threads(choice)
        self.detail(choice.describe())


def main_progress(feedback: Feedback | None = None) -> Any:
    """The progress display on rank 0 (the only process without torchrun); nothing on the others,
    whose bars would overwrite each other on one terminal."""
    from cegate_cli.infra.distributed import is_main

    return (feedback or Feedback()).batch_progress() if is_main() else contextlib.nullcontext(None)
