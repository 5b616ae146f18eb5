"""An option dataclass's fields from a JSON record, each value checked against the field's type.

run.json's option sections (toolbox, training) become the frozen option classes again when a run
is read back. A float where a module width belongs would reach torch as an allocation, so every
value is checked here against the type its field declares, and a wrong one names the field.
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from typing import Any


class FieldTypeError(ValueError):
    """A record's value does not have its field's type; the message names the field."""


def record_fields(cls: type, data: Any, *, section: str, unknown: str = "refuse", prefix: str = "") -> dict[str, Any]:
    """Keyword arguments for `cls` from the JSON object `data` (the section `section` of a record).

    The record names field `f` as `prefix + f` (a toolbox kind's `lora_rank` for its `rank`).
    Fields missing from `data` are left to the class's defaults. Keys `cls` does not have are
    refused, or dropped with `unknown="drop"` (fields a later version removed, or another
    class's in the same section).
    """
    require_object(data, section)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    strange = [key for key in data if key not in {prefix + name for name in names}]
    if strange and unknown == "refuse":
        raise FieldTypeError(f"{section}.{strange[0]} is not a field cegate knows")
    return {
        name: checked_value(data[prefix + name], hints[name], f"{section}.{prefix}{name}") for name in names if prefix + name in data
    }


def require_object(data: Any, section: str) -> None:
    """A FieldTypeError unless `data` is a JSON object (the section `section` of a record)."""
    if not isinstance(data, dict):
        raise FieldTypeError(f"{section} is a {_json_kind(data)}, not an object of fields")


def checked_value(value: Any, annotation: Any, where: str) -> Any:
    """`value` as the type `annotation` names (ints widened to float where a float belongs), or a
    FieldTypeError naming `where`."""
    allowed = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    if value is None:
        if type(None) in allowed:
            return None
        raise FieldTypeError(f"{where} is null; it needs {_expected(allowed)}")
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
        if typing.get_origin(kind) is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    shown = repr(value)
    raise FieldTypeError(f"{where} is {shown if len(shown) <= 40 else shown[:37] + '...'}, not {_expected(allowed)}")


def _expected(allowed: tuple[Any, ...]) -> str:
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "text", type(None): "null"}
    return " or ".join(words.get(kind, "a list of names") for kind in allowed)


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
