"""A rich progress display for training: step, loss, learning rate, it/s, ETA, validation mIoU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cegate_cli.commands.console import stderr

if TYPE_CHECKING:
    from cegate_cli.fisher import Selection


class RichTrainReporter:
    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]adapt"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("val mIoU {task.fields[miou]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=stderr,
            transient=False,
        )
        self.task = None
        self.started = False

    def start(self, total_steps: int, first_step: int) -> None:
        self.progress.start()
        self.started = True
        self.task = self.progress.add_task("adapt", total=total_steps, completed=first_step, loss="-", lr="-", speed="", miou="-")
        if first_step:
            self.message(f"resuming at step {first_step} of {total_steps}")

    def message(self, text: str) -> None:
        (self.progress.console if self.started else stderr).print(text)

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
