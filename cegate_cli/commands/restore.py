"""`cegate restore`: put back the run an interrupted `adapt --overwrite` set aside."""

from __future__ import annotations

import typer

from cegate_cli.commands.console import stdout
from cegate_cli.commands.options import RunArg


def register(app: typer.Typer) -> None:
    @app.command(name="restore")
    def restore_command(run: RunArg) -> None:
        """Put back the earlier run that an interrupted `adapt --overwrite` kept in RUN/.replaced-run, removing the unfinished one."""
        from cegate_cli.run.replaced import restore

        stdout.print(restore(run), markup=False, highlight=False, soft_wrap=True)
