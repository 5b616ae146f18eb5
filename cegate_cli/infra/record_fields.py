"""A dataclass's fields from a JSON record, each value checked against the field's type.

run.json's sections become their frozen classes again when a run is read back: the option
sections (toolbox, training) and the record's own (run/sections.py). A float where a module width
belongs would reach torch as an allocation, so every value is checked here against the type its
field declares, and a wrong one names the field. Types understood: bool, int, float, str, None,
unions of them, `tuple[X, ...]` and `tuple[X, Y]` (JSON lists), `dict[str, X]` (JSON objects),
nested dataclasses (objects of their fields) and `Any` (any JSON value, taken as it is).
"""

from __future__ import annotations

import dataclasses
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
    return {name: checked_value(data[prefix + name], hints[name], f"{section}.{prefix}{name}") for name in names if prefix + name in data}


def require_object(data: Any, section: str) -> None:
    """A FieldTypeError unless `data` is a JSON object (the section `section` of a record)."""
    if not isinstance(data, dict):
        raise FieldTypeError(f"{section} is a {_json_kind(data)}, not an object of fields")


def checked_value(value: Any, annotation: Any, where: str) -> Any:
    """`value` as the type `annotation` names (ints widened to float where a float belongs), or a
    FieldTypeError naming `where`."""
    if annotation is Any:
        return value
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
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin is tuple and isinstance(value, list):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(checked_value(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
            if len(value) == len(args):
                return tuple(checked_value(item, arg, f"{where}[{i}]") for i, (item, arg) in enumerate(zip(value, args)))
        if origin is dict and isinstance(value, dict) and all(isinstance(key, str) for key in value):
            return {key: checked_value(item, args[1], f"{where}.{key}") for key, item in value.items()}
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            return kind(**record_fields(kind, value, section=where))  # type: ignore[operator]
    shown = repr(value)
    raise FieldTypeError(f"{where} is {shown if len(shown) <= 40 else shown[:37] + '...'}, not {_expected(allowed)}")


def _expected(allowed: tuple[Any, ...]) -> str:
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "text", type(None): "null"}
    return " or ".join(words.get(kind, _container_word(kind)) for kind in allowed)


def _container_word(kind: Any) -> str:
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        if args == (str, Ellipsis):
            return "a list of names"
        return "a list" if args[-1:] == (Ellipsis,) else f"a list of {len(args)}"
    return "an object of fields" if dataclasses.is_dataclass(kind) else "an object"


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
