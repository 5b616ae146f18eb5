"""The `cegate` command: a Typer app whose commands live one per file in `cegate_cli.commands`.

Library errors (`CegateError`) become one line on stderr and exit code 2, and so does a broken
installation recognised by install_check.py (a torchvision built for another torch). That mapping
lives in the command group itself, so `cegate`, `python -m cegate_cli`, `torchrun -m cegate_cli`
and tests driving the app all behave the same. Set CEGATE_DEBUG=1 to get the traceback instead.

OMP_WAIT_POLICY=PASSIVE is set (unless the user set it) before anything else is imported: PyTorch's
OpenMP runtime reads it once, when torch is first imported, and with it idle threads sleep instead
of spinning against other programs for the same cores (see cegate_cli/threads.py). Every way in
(`cegate`, `python -m cegate_cli`, `torchrun -m cegate_cli`) imports this module first.
"""

from __future__ import annotations

from cegate_cli.infra.threads import prefer_passive_waiting

prefer_passive_waiting()  # before torch is imported anywhere in this process

import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402
import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from cegate_cli import __version__  # noqa: E402
from cegate_cli.commands import register_commands  # noqa: E402
from cegate_cli.errors import CegateError, Interrupted  # noqa: E402
from cegate_cli.infra.install_check import broken_install  # noqa: E402

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), what shells and Typer use."""


def show_flags_as_switches(params: list[Any]) -> list[Any]:
    """On/off options read as switches in --help (`--overwrite`, `--augment / --no-augment`)
    instead of Typer's `--overwrite <bool>`, which suggests they take a value. Duck-typed:
    recent Typer releases carry their own copy of click, whose classes are not `click.Option`."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""  # Typer's help shows the metavar in place of the type when it is set
    return params


def option_value(args: list[str], opts: list[str]) -> str | None:
    """The last value given on the command line for an option (`--steps 6o` or `--steps=6o`)."""
    value = None
    for index, arg in enumerate(args):
        for opt in opts:
            if arg == opt and index + 1 < len(args):
                value = args[index + 1]
            elif arg.startswith(opt + "="):
                value = arg[len(opt) + 1 :]
    return value


def name_bad_value(exc: Exception, args: list[str]) -> None:
    """Put the value the user typed into an invalid-value message. Recent Typer releases check
    types with pydantic, whose text ("Input should be a valid integer, unable to parse string as
    an integer") leaves it out; click's own says "'6o' is not a valid integer.", as this does."""
    param, message = getattr(exc, "param", None), getattr(exc, "message", None)
    if param is None or not isinstance(message, str) or not message.startswith("Input should be "):
        return
    value = option_value(args, list(getattr(param, "opts", [])))
    if value is None:
        return
    expected = message[len("Input should be ") :].split(",")[0].rstrip(".")
    exc.message = f"{value!r} is not {expected}."


class CegateGroup(TyperGroup):
    def get_params(self, ctx: click.Context) -> list[Any]:
        return show_flags_as_switches(super().get_params(ctx))

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            show_flags_as_switches(command.get_params(ctx))
        return command

    def invoke(self, ctx: click.Context) -> Any:
        args = [*getattr(ctx, "_protected_args", []), *ctx.args]
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:  # Typer's own copy of click's, in recent releases
            name_bad_value(exc, args)
            raise
        except CegateError as exc:
            if os.environ.get("CEGATE_DEBUG"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except RuntimeError as exc:  # click's Exit is a RuntimeError too: broken_install passes it on
            error = broken_install(exc)
            if error is None or os.environ.get("CEGATE_DEBUG"):
                raise
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt as exc:
            # Caught here because Typer turns KeyboardInterrupt into a silent exit 130 before
            # `main` could say anything; the user needs to know where it stopped (adapt says
            # which step and how to --resume, predict and evaluate which scenes were finished).
            if os.environ.get("CEGATE_DEBUG"):
                raise
            click.echo(str(exc) if isinstance(exc, Interrupted) else "Interrupted.", err=True)
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


if __name__ == "__main__":  # `python -m cegate_cli.cli`, as well as `python -m cegate_cli`
    main()
