"""The `cegate` command: a Typer app whose commands live one per file in `cegate_cli.commands`.

Library errors (`CegateError`) become one line on stderr and exit code 2. That mapping lives in
the command group itself, so `cegate`, `python -m cegate_cli`, `torchrun -m cegate_cli` and
tests driving the app all behave the same. Set CEGATE_DEBUG=1 to get the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import typer
from typer.core import TyperGroup

from cegate_cli import __version__
from cegate_cli.commands import register_commands
from cegate_cli.errors import CegateError, TrainingInterrupted

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), what shells and Typer use."""


class CegateGroup(TyperGroup):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CegateError as exc:
            if os.environ.get("CEGATE_DEBUG"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            # Caught here because Typer turns KeyboardInterrupt into a silent exit 130 before
            # `main` could say anything; the user needs to know where it stopped (adapt says
            # which step and how to --resume).
            if os.environ.get("CEGATE_DEBUG"):
                raise
            click.echo(str(exc) if isinstance(exc, TrainingInterrupted) else "Interrupted.", err=True)
            ctx.exit(INTERRUPTED)


app = typer.Typer(
    name="cegate",
    cls=CegateGroup,
    help="Adapt geospatial foundation models to your GeoTIFFs (CrossEarth-Gate) and map whole scenes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cegate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """Adapt geospatial foundation models to your GeoTIFFs and map whole scenes."""


register_commands(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `cegate` script, `python -m cegate_cli` and `torchrun -m cegate_cli`."""
    try:
        app(args=argv, standalone_mode=True)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(INTERRUPTED)
