"""Progress over files and tiles for `predict` and `evaluate` on a terminal, drawn on stderr
(plain_progress.py writes lines instead when stderr is a file or a pipe)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cegate_cli.commands.console import stderr
from cegate_cli.commands.plain_progress import PhaseLines, scene_finished_line
from cegate_cli.infra.progress import BatchProgress


class RichBatchProgress(PhaseLines, BatchProgress):
    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or stderr,
        )
        self.files_task: Any = None
        self.tiles_task: Any = None
        self.started = False
        self.scene_started = 0.0
        self.source: Path | None = None
        self.finished = 0
        self.total_files = 0

    def __enter__(self) -> RichBatchProgress:
        return self  # the display starts with the first scene: an early error stays one clean line

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.progress.stop()

    def say(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def file_started(self, source: Path, index: int, total_files: int, tiles: int) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        if self.files_task is None:
            self.files_task = self.progress.add_task("scenes", total=total_files)
        if self.tiles_task is not None:
            self.progress.remove_task(self.tiles_task)
        self.tiles_task = self.progress.add_task(f"  {escape(source.name)}", total=max(tiles, 1))
        self.source, self.total_files, self.scene_started = Path(source), total_files, time.monotonic()

    def tiles_done(self, count: int) -> None:
        if self.tiles_task is not None:
            self.progress.advance(self.tiles_task, count)

    def file_finished(self, outcome: Any) -> None:
        self.finished += 1
        if self.files_task is not None:
            self.progress.advance(self.files_task, 1)
        started = self.scene_started if self.source == outcome.source else time.monotonic()
        line = scene_finished_line(outcome, self.finished, max(self.total_files, self.finished), time.monotonic() - started)
        if outcome.status == "failed":
            self.progress.console.print(f"[red]{escape(line)}[/red]")
        else:
            self.say(line)
        self.source = None


def make_progress() -> RichBatchProgress:
    """The live display of a terminal (kept for callers of the earlier lazy factory)."""
    return RichBatchProgress()
