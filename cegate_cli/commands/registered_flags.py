"""Flags a registry declares, added to a command: a toolbox kind's size flags on `adapt`.

A command lists its own options as parameters. Options that come with a registered extension
are declared by the extension (the flag, its type, default and help) and added here to the
command's signature after one of its parameters, so Typer, `--help`, `--config` and
`--print-config` see them like any other option and the command's function receives them as
keyword arguments (`**registered`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Optional, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Flag:
    """One declared option: `--lora-rank` reaches the command as `lora_rank`."""

    flag: str
    type: Any
    default: Any
    """What the command receives when the flag is not given."""
    help: str
    show_default: str | bool = True

    @property
    def name(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def key(self) -> str:
        """Its key in a config file: the flag without `--`."""
        return self.flag[2:]


def with_flags(func: F, flags: Sequence[Flag], *, after: str, panel: str | None = None) -> F:
    """`func` (which takes `**registered`) with `flags` as parameters right after parameter `after`
    (of the same kind: keyword-only after a keyword-only one), listed under `--help` panel `panel`
    (None: the command's Options)."""
    signature = inspect.signature(func, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    at = next(i for i, p in enumerate(params) if p.name == after) + 1
    kind = params[at - 1].kind
    added = []
    annotations = dict(func.__annotations__)
    for flag in flags:
        option = typer.Option(flag.flag, help=flag.help, show_default=flag.show_default, rich_help_panel=panel)
        annotation = Annotated[flag.type, option]
        added.append(inspect.Parameter(flag.name, kind, default=flag.default, annotation=annotation))
        annotations[flag.name] = annotation
    func.__signature__ = signature.replace(parameters=params[:at] + added + params[at:])  # type: ignore[attr-defined]
    func.__annotations__ = annotations
    return func


def kind_size_flags() -> list[Flag]:
    """Every toolbox kind's size that declares a flag, as `adapt` takes it: None when not given
    (the library's default, shown in `--help`), the default itself in `--print-config`."""
    from cegate_cli.toolbox.kinds import size_options

    return [Flag(option.flag, Optional[option.type], None, option.help, show_default=str(option.default)) for option in size_options() if option.flag]


def kind_size_values(config: typing.Mapping[str, Any]) -> dict[str, Any]:
    """`ToolboxConfig` keyword arguments (`lora_rank=4`) from a resolved configuration's
    flag keys (`lora-rank: 4`); a key with no value leaves the kind's default."""
    from cegate_cli.toolbox.kinds import size_options

    return {option.key: config[option.flag[2:]] for option in size_options() if option.flag and config.get(option.flag[2:]) is not None}


def kind_size_defaults() -> dict[str, Any]:
    """Flag key -> the kind's default, for the size flags `adapt` declares as None."""
    from cegate_cli.toolbox.kinds import size_options

    return {option.flag[2:]: option.default for option in size_options() if option.flag}
