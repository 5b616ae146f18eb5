"""`cegate evaluate`: not built yet."""

from __future__ import annotations

import typer

from cegate_cli.errors import CegateError


def register(app: typer.Typer) -> None:
    @app.command(name="evaluate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def evaluate() -> None:
        """(not built yet)"""
        raise CegateError("'cegate evaluate' is not built yet in this version; see CHANGELOG.md")
