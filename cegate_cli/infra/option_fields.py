"""Option fields: a dataclass field that carries the help a user reads and the flag that sets it.

peft's habit (`field(default=8, metadata={"help": ...})`): the option classes of the library hold
each user-facing setting's one-line help and, where a command takes it, its command-line name
(`"--steps"`, or `"SOURCE"` for an argument). A command reads the help from here (`help_of`), so
the text exists once, beside the value it describes, and a tool can follow a flag to the field it
sets (`flagged_fields`). The same shape as a toolbox kind's sizes (toolbox/kinds.py
`KindOptions`).

In `infra`, below every package that declares options (options, backbone, predict), so each can
use it without a package depending on another.
"""

from __future__ import annotations

import dataclasses
from typing import Any

HELP = "help"
FLAG = "flag"


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None) -> Any:  # noqa: A002 (peft's name)
    """A dataclass field with `default` (none: a required field), its `help` and its `flag`."""
    metadata: dict[str, str] = {HELP: help}
    if flag is not None:
        metadata[FLAG] = flag
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_field(cls: type, name: str) -> dataclasses.Field[Any]:
    """Field `name` of dataclass `cls` (KeyError naming both if it has none)."""
    for item in dataclasses.fields(cls):
        if item.name == name:
            return item
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def help_of(cls: type, name: str) -> str:
    """The help of field `name` of `cls` (KeyError if it declares none)."""
    metadata = option_field(cls, name).metadata
    if HELP not in metadata:
        raise KeyError(f"{cls.__name__}.{name} declares no help")
    return str(metadata[HELP])


def flag_of(cls: type, name: str) -> str | None:
    """The command-line name of field `name` of `cls`, or None where no command takes it."""
    flag = option_field(cls, name).metadata.get(FLAG)
    return None if flag is None else str(flag)


def flagged_fields(cls: type) -> dict[str, str]:
    """Flag -> field name for every field of `cls` that names its flag, in field order."""
    return {str(item.metadata[FLAG]): item.name for item in dataclasses.fields(cls) if FLAG in item.metadata}
