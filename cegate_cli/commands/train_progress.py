"""A rich progress display for training on a terminal: step, loss, learning rate, it/s, ETA,
validation mIoU, with the long phases before it as lines above (plain_progress.py: in a log file)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cegate_cli.commands.console import stderr
from cegate_cli.commands.plain_progress import PhaseLines, selection_line, top_scores_line

if TYPE_CHECKING:
    from cegate_cli.toolbox.fisher import Selection


class RichTrainReporter(PhaseLines):
    WIDE = 110
    """Below this many columns (80 when stderr is a file or a CI log) the bar and the learning rate
    are left out, so that the numbers that matter are never cut to "…"."""

    def __init__(self, console: Console | None = None, verbose: bool = False) -> None:
        console = console or stderr
        self.verbose = verbose
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

    def say(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

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
        self.say(selection_line(selection))
        line = top_scores_line(selection) if self.verbose else None
        if line:
            self.say(line)

    def finish(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False
