"""Progress over files and tiles for `predict` and `evaluate`, drawn on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cegate_cli.commands.console import stderr


def make_progress() -> Any:
    """Built lazily so importing the command module does not import torch (via cegate_cli.predict)."""
    from cegate_cli.predict import BatchProgress

    class RichBatchProgress(BatchProgress):
        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=stderr,
            )
            self.files_task: Any = None
            self.tiles_task: Any = None
            self.started = False

        def __enter__(self) -> RichBatchProgress:
            return self  # the display starts with the first scene: an early error stays one clean line

        def __exit__(self, *exc: Any) -> None:
            if self.started:
                self.progress.stop()

        def file_started(self, source: Path, index: int, total_files: int, tiles: int) -> None:
            if not self.started:
                self.progress.start()
                self.started = True
            if self.files_task is None:
                self.files_task = self.progress.add_task("scenes", total=total_files)
            if self.tiles_task is not None:
                self.progress.remove_task(self.tiles_task)
            self.tiles_task = self.progress.add_task(f"  {escape(source.name)}", total=max(tiles, 1))

        def tiles_done(self, count: int) -> None:
            if self.tiles_task is not None:
                self.progress.advance(self.tiles_task, count)

        def file_finished(self, outcome: Any) -> None:
            if self.files_task is not None:
                self.progress.advance(self.files_task, 1)
            if outcome.status == "failed":
                self.progress.console.print(f"[red]failed[/red] {escape(str(outcome.source))}: {escape(outcome.message or '')}")
            elif outcome.status == "skipped":
                self.progress.console.print(f"skipped {escape(str(outcome.source))}: {escape(outcome.message or 'outputs exist (use --overwrite)')}")

    return RichBatchProgress()
