"""How training tells the outside world what it is doing, without printing itself.

The library stays quiet; the CLI passes a reporter that draws a rich progress display (or, in
a log file, plain lines), tests pass none (or one that records). Long steps outside the training
loop are announced as phases (`cegate_cli.infra.progress.phase`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the CLI's displays subclass SilentReporter before torch is loaded
    from cegate_cli.toolbox.fisher import Selection


class TrainReporter(Protocol):
    def phase_started(self, name: str) -> None: ...
    def phase_finished(self, name: str, seconds: float) -> None: ...
    def start(self, total_steps: int, first_step: int) -> None: ...
    def message(self, text: str) -> None: ...
    def step(self, step: int, loss: float, lr: float) -> None: ...
    def validation(self, step: int, miou: float) -> None: ...
    def selection(self, selection: Selection) -> None: ...
    def finish(self) -> None: ...


class SilentReporter:
    def phase_started(self, name: str) -> None:
        pass

    def phase_finished(self, name: str, seconds: float) -> None:
        pass

    def start(self, total_steps: int, first_step: int) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def step(self, step: int, loss: float, lr: float) -> None:
        pass

    def validation(self, step: int, miou: float) -> None:
        pass

    def selection(self, selection: Selection) -> None:
        pass

    def finish(self) -> None:
        pass
