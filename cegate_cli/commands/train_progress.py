"""A rich progress display for training: step, loss, learning rate, it/s, ETA, validation mIoU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cegate_cli.commands.console import stderr

if TYPE_CHECKING:
    from cegate_cli.fisher import Selection


class RichTrainReporter:
    WIDE = 110
    """Below this many columns (80 when stderr is a file or a CI log) the bar and the learning rate
    are left out, so that the numbers that matter are never cut to "…"."""

    def __init__(self, console: Console | None = None) -> None:
        console = console or stderr
        wide = console.width >= self.WIDE
        columns = [
            TextColumn("[bold]adapt"),
            *([BarColumn(bar_width=min(40, console.width - 100))] if wide else []),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            *([TextColumn("lr {task.fields[lr]}")] if wide else []),
            TextColumn("{task.fields[speed]}"),
            TextColumn("val mIoU {task.fields[miou]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        ]
        self.progress = Progress(*columns, console=console, transient=False)
        self.task = None
        self.started = False

    def start(self, total_steps: int, first_step: int) -> None:
        self.progress.start()
        self.started = True
        self.task = self.progress.add_task("adapt", total=total_steps, completed=first_step, loss="-", lr="-", speed="", miou="-")
        if first_step:
            self.message(f"resuming at step {first_step} of {total_steps}")

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def step(self, step: int, loss: float, lr: float) -> None:
        if self.task is None:
            return
        task = self.progress.tasks[self.task]
        speed = f"{task.speed:.2f} it/s" if task.speed else ""
        self.progress.update(self.task, completed=step, loss=f"{loss:.3f}", lr=f"{lr:.1e}", speed=speed)

    def validation(self, step: int, miou: float) -> None:
        if self.task is not None:
            self.progress.update(self.task, miou=f"{miou:.3f}")

    def selection(self, selection: Selection) -> None:
        chosen = ", ".join(f"{kind}@{layer}" for kind, layer in selection.selected)
        self.message(f"step {selection.step}: Fisher selection ({selection.scores.samples} samples, {selection.seconds:.1f}s): {chosen}")

    def finish(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False
