"""`cegate inspect`: not built yet."""

from __future__ import annotations

import typer

from cegate_cli.errors import CegateError


def register(app: typer.Typer) -> None:
    @app.command(name="inspect", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def inspect() -> None:
        """(not built yet)"""
        raise CegateError("'cegate inspect' is not built yet in this version; see CHANGELOG.md")
