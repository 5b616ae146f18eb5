"""One module per `cegate` command; each exposes `register(app)`.

The command bodies only map flags to one library call and render its result.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = ("pull", "adapt", "predict", "evaluate", "inspect", "report", "restore", "demo")


def register_commands(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cegate_cli.commands.{name}")
        module.register(app)
