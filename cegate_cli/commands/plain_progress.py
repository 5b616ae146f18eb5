"""Progress as plain lines, for stderr that is not a terminal (a log file, a pipe, a CI job).

A live display (rich) draws nothing into a file until it ends: the demo once printed nothing for
26 minutes after its Fisher line. Here every long phase gets a line when it starts and one with
its duration when it ends, and training and mapping print a line at a steady interval (and at
their first and last step) with the counts, loss, elapsed time and ETA, so `tail -f` shows
whether a run is moving and when it will end.

Also here: the phase lines the live displays share, and the quiet reporter (`--quiet`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from cegate_cli.infra.progress import BatchProgress
from cegate_cli.infra.words import counted
from cegate_cli.train.reporter import SilentReporter

if TYPE_CHECKING:
    from cegate_cli.predict.batch import FileOutcome
    from cegate_cli.toolbox.fisher import Selection

TOP_SCORES = 8
"""How many Fisher scores `--verbose` lists after each selection."""
PHASE_DELAY_SECONDS = 2.0
"""A phase gets its lines only once it has run this long: the long ones are named while they run,
and the quick ones (and an error right after them) stay free of lines that say nothing."""


def duration(seconds: float) -> str:
    """3.2 s under a minute, else H:MM:SS (what rich's elapsed column shows)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class Ticker:
    """True at the first call and then once `interval` seconds have passed since it was last true."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self.last is None or now - self.last >= self.interval:
            self.last = now
            return True
        return False


def eta(done: int, total: int, seconds: float) -> str:
    """Time left at the rate so far ("-" before anything is done)."""
    if done <= 0 or seconds <= 0:
        return "-"
    return duration(max(0.0, (total - done) * seconds / done))


def selection_line(selection: Selection) -> str:
    chosen = ", ".join(f"{kind}@{layer}" for kind, layer in selection.selected) or "none"
    if not selection.scores.samples:
        return f"step {selection.step}: selection rule {selection.rule}: {chosen}"
    return f"step {selection.step}: Fisher selection ({selection.scores.samples} samples, {duration(selection.seconds)}): {chosen}"


def top_scores_line(selection: Selection, count: int = TOP_SCORES) -> str | None:
    """The highest normalised Fisher scores, for --verbose (None when nothing was scored)."""
    scores = sorted(selection.scores.normalized.items(), key=lambda item: -item[1])[:count]
    if not scores:
        return None
    return "  top Fisher scores: " + ", ".join(f"{kind}@{layer} {value:.3f}" for (kind, layer), value in scores)


class PhaseLines:
    """Phases as two lines, "NAME ..." and "NAME: done in 3.2 s", for those that last at least
    `phase_delay` seconds (0: every phase, at once). The start line is printed by a timer once
    the phase has lasted that long, so it appears while the phase is still running."""

    phase_delay: float = PHASE_DELAY_SECONDS

    def say(self, text: str) -> None:
        raise NotImplementedError

    def _pending(self) -> tuple[threading.RLock, dict[str, Any]]:
        """name -> the timer of a phase not yet announced, or True once it was (created lazily:
        the classes using this mixin have their own constructors)."""
        if "_phase_lock" not in self.__dict__:
            # Re-entrant: a Ctrl-C can land between a `with lock:`'s acquire and its cleanup
            # (with-statements are not signal-safe), and the interrupted main thread then settles
            # its phases under the same lock; a plain Lock would wait on itself forever.
            self.__dict__["_phase_lock"] = threading.RLock()
            self.__dict__["_phases"] = {}
        return self.__dict__["_phase_lock"], self.__dict__["_phases"]

    def _announce(self, name: str) -> None:
        lock, phases = self._pending()
        with lock:
            if name not in phases or phases[name] is True:
                return  # finished or abandoned meanwhile
            phases[name] = True
            self.say(f"{name} ...")

    def phase_started(self, name: str) -> None:
        lock, phases = self._pending()
        if self.phase_delay <= 0:
            with lock:
                phases[name] = True
            self.say(f"{name} ...")
            return
        timer = threading.Timer(self.phase_delay, self._announce, args=(name,))
        timer.daemon = True
        with lock:
            phases[name] = timer
        timer.start()

    def _settle(self, name: str) -> bool:
        """Stop waiting on `name`; whether its start line was printed."""
        lock, phases = self._pending()
        with lock:
            state = phases.pop(name, None)
        if isinstance(state, threading.Timer):
            state.cancel()
        return state is True

    def phase_finished(self, name: str, seconds: float) -> None:
        if self._settle(name) or seconds >= self.phase_delay:
            self.say(f"{name}: done in {duration(seconds)}")

    def phase_abandoned(self, name: str) -> None:
        self._settle(name)


class PlainTrainReporter(PhaseLines):
    """Training as lines: one at the first step, then one every `interval` seconds, one at the end."""

    def __init__(self, console: Console, interval: float, verbose: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.verbose = verbose
        self.clock = clock
        self.ticker = Ticker(interval, clock)
        self.total = 0
        self.first = 0
        self.last = 0
        self.started: float | None = None

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def start(self, total_steps: int, first_step: int) -> None:
        self.total, self.first, self.last = total_steps, first_step, first_step
        self.started = self.clock()
        resumed = f", resuming at step {first_step}" if first_step else ""
        self.say(f"training: {counted(total_steps, 'step')}{resumed} ...")

    def message(self, text: str) -> None:
        self.say(text)

    def step(self, step: int, loss: float, lr: float) -> None:
        self.last = step
        if self.started is None or not (self.ticker.due() or step >= self.total):
            return
        elapsed = self.clock() - self.started
        done = step - self.first
        speed = f"  {done / elapsed:.2f} it/s" if elapsed > 0 and done > 0 else ""
        self.say(
            f"adapt step {step}/{self.total} ({step / max(self.total, 1):.0%})  loss {loss:.3f}  lr {lr:.1e}{speed}  "
            f"elapsed {duration(elapsed)}  ETA {eta(done, self.total - self.first, elapsed)}"
        )

    def validation(self, step: int, miou: float) -> None:
        self.say(f"adapt step {step}/{self.total}: validation mIoU {miou:.3f}")

    def selection(self, selection: Selection) -> None:
        self.say(selection_line(selection))
        if self.verbose:
            line = top_scores_line(selection)
            if line:
                self.say(line)

    def finish(self) -> None:
        """The end of training: done, or (Ctrl-C, an error, a stop) where it stopped."""
        if self.started is None:
            return
        took = duration(self.clock() - self.started)
        if self.last >= self.total:
            self.say(f"training: done in {took}")
        else:
            self.say(f"training: stopped at step {self.last} of {self.total} after {took}")
        self.started = None


class QuietTrainReporter(SilentReporter):
    """`--quiet`: nothing but warnings (the library's messages that start with "warning:")."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def message(self, text: str) -> None:
        if text.startswith("warning:"):
            self.console.print(text, markup=False, highlight=False)


def scene_finished_line(outcome: FileOutcome, index: int, total: int, seconds: float) -> str:
    """One line for a scene's end: done with its duration (and, when its mask was kept from an
    earlier call into the same folder rather than mapped now, that and how to map it again),
    skipped, or failed with the reason."""
    where = f"scene {index}/{total} {outcome.source.name}"
    if outcome.status == "failed":
        return f"{where}: failed: {outcome.message or ''}"
    if outcome.status == "skipped":
        return f"{where}: skipped: {outcome.message or 'outputs exist (use --overwrite)'}"
    if outcome.scene is None and outcome.message:  # not mapped now: its mask was kept
        return f"{where}: done in {duration(seconds)} ({outcome.message}; use --overwrite to map it again)"
    return f"{where}: done in {duration(seconds)}"


class PlainBatchProgress(PhaseLines, BatchProgress):
    """Mapping as lines: each scene's start and end, and its tiles every `interval` seconds."""

    def __init__(self, console: Console, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.interval = interval
        self.ticker = Ticker(interval, clock)
        self.source: Path | None = None
        self.index = self.total_files = self.tiles = self.done = self.finished = 0
        self.started = 0.0

    def __enter__(self) -> PlainBatchProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def file_started(self, source: Path, index: int, total_files: int, tiles: int) -> None:
        self.source, self.index, self.total_files, self.tiles, self.done = Path(source), index + 1, total_files, tiles, 0
        self.started = self.clock()
        self.ticker = Ticker(self.interval, self.clock)
        self.ticker.due()  # the start line below stands for the first tick
        what = f": {counted(tiles, 'tile')}" if tiles else ""
        self.say(f"scene {self.index}/{total_files} {self.source.name}{what} ...")

    def tiles_done(self, count: int) -> None:
        self.done += count
        if self.source is None or self.done >= self.tiles or not self.ticker.due():
            return
        elapsed = self.clock() - self.started
        self.say(
            f"scene {self.index}/{self.total_files} {self.source.name}: tiles {self.done}/{self.tiles} "
            f"({self.done / max(self.tiles, 1):.0%})  elapsed {duration(elapsed)}  ETA {eta(self.done, self.tiles, elapsed)}"
        )

    def file_finished(self, outcome: FileOutcome) -> None:
        self.finished += 1
        started = self.started if self.source == outcome.source else self.clock()  # failed before it started
        total = max(self.total_files, self.finished)
        self.say(scene_finished_line(outcome, self.finished, total, self.clock() - started))
        self.source = None


class QuietBatchProgress(BatchProgress):
    """`--quiet`: no progress at all (failures are reported with the result)."""

    def __enter__(self) -> QuietBatchProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
