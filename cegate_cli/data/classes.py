"""The class table: ids, names and colours that masks, runs and outputs share.

A labeled folder may carry a `classes.yaml`; without one the classes come from the mask values.
The same table is stored in run.json and written into every predicted mask (colour table, tags).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cegate_cli.errors import DataError, DocumentError
from cegate_cli.infra.documents import read_yaml

DEFAULT_IGNORE_INDEX = 255
MAX_IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassInfo:
    """One class: the integer stored in masks, a name for people, an RGB colour for maps."""

    id: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class ClassTable:
    """All classes of a task plus the mask value that means "no label here"."""

    classes: tuple[ClassInfo, ...]
    ignore_index: int = DEFAULT_IGNORE_INDEX

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise DataError(f"class id(s) {twice} appear more than once (ids {ids}); give every class its own id")
        if self.ignore_index in ids:
            raise DataError(f"class id {self.ignore_index} is also the ignore index; choose another ignore_index in classes.yaml or with --ignore-index")
        for c in self.classes:
            if not 0 <= c.id <= 254:
                raise DataError(f"class id {c.id} ({c.name!r}) must be between 0 and 254")
        if not 0 <= self.ignore_index <= MAX_IGNORE_INDEX:
            # Class ids are one byte (0-254) and predicted masks are uint8, so a "no label" value
            # above 255 could only ever match in 16-bit masks, silently ignoring nothing elsewhere.
            raise DataError(
                f"ignore index {self.ignore_index} must be between 0 and {MAX_IGNORE_INDEX} (class ids are 0-254); "
                "mark unlabeled pixels with one such value, or declare the mask's nodata value"
            )

    @property
    def num_classes(self) -> int:
        """Number of output channels of the head: the largest id + 1 (ids may have gaps)."""
        return max(c.id for c in self.classes) + 1 if self.classes else 0

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes)

    def name_of(self, class_id: int) -> str:
        for c in self.classes:
            if c.id == class_id:
                return c.name
        return f"class_{class_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ignore_index": self.ignore_index,
            "classes": [{"id": c.id, "name": c.name, "color": list(c.color)} for c in self.classes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassTable:
        """The table `to_dict` wrote (run.json); a value of the wrong kind is a DataError."""
        classes = []
        for entry in data["classes"]:
            class_id, name = entry["id"], entry["name"]
            if not _is_int(class_id) or not isinstance(name, str):
                raise DataError(f"class {class_id!r} {name!r}: the id must be a whole number and the name text")
            classes.append(ClassInfo(class_id, name, parse_color(entry["color"], f"class {name!r}")))
        ignore_index = data.get("ignore_index", DEFAULT_IGNORE_INDEX)
        if not _is_int(ignore_index):
            raise DataError(f"ignore index {ignore_index!r} is not a whole number")
        return cls(classes=tuple(classes), ignore_index=ignore_index)

    @classmethod
    def from_ids(cls, ids: list[int], ignore_index: int = DEFAULT_IGNORE_INDEX) -> ClassTable:
        """Classes found in masks, with generated names and well separated colours."""
        ordered = sorted(set(ids) - {ignore_index})
        return cls(
            classes=tuple(ClassInfo(i, f"class_{i}", generated_color(k, len(ordered))) for k, i in enumerate(ordered)),
            ignore_index=ignore_index,
        )


def generated_color(index: int, count: int) -> tuple[int, int, int]:
    """Evenly spaced hues so generated classes are distinguishable on a map."""
    r, g, b = colorsys.hsv_to_rgb(index / max(count, 1), 0.75, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def parse_color(value: Any, where: str) -> tuple[int, int, int]:
    """Accept `[r, g, b]` or `"#rrggbb"`."""
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)
        except ValueError:
            pass  # '#zzzzzz': falls through to the one message for every unusable colour
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in value):
        return int(value[0]), int(value[1]), int(value[2])
    raise DataError(f"{where}: colour {value!r} is not [r, g, b] (0-255) or '#rrggbb'; write e.g. '#1f78b4' or [31, 120, 180]")


def _is_int(value: Any) -> bool:
    """A whole number as YAML gives it; `true` is an int to Python but never a class id."""
    return isinstance(value, int) and not isinstance(value, bool)


def _whole_number(value: Any, what: str, low: int, high: int, path: Path, fix: str) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise DataError(f"{path}: {what} {value!r} is not a whole number from {low} to {high}; {fix}")
    return int(value)


def _read_yaml(path: Path) -> Any:
    """The parsed file (through the one safe loader), or one line naming it and the template."""
    try:
        return read_yaml(path)
    except DocumentError as exc:
        raise DataError(f"{exc}; see examples/classes.yaml") from None


def load_class_table(path: Path, ignore_index: int | None = None) -> ClassTable:
    """Read a classes.yaml; `ignore_index` (from the command line) overrides the file's value.

    Every problem is a DataError naming the file, so the CLI prints one line instead of a traceback.
    """
    path = Path(path)
    data = _read_yaml(path) or {}
    entries = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: expected a 'classes:' list of {{id, name, colour}}; see examples/classes.yaml")
    classes = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry or "name" not in entry:
            raise DataError(f"{path}: class entry {n + 1} needs at least 'id' and 'name', got {entry!r}")
        name = entry["name"]
        if name is None or not str(name).strip():
            raise DataError(f"{path}: class entry {n + 1} has an empty name; give every class a name")
        class_id = _whole_number(entry["id"], f"class {name!r}: id", 0, 254, path, "ids are the class values stored in the masks")
        color_value = entry.get("color", entry.get("colour"))
        color = parse_color(color_value, f"{path}: class {name!r}") if color_value is not None else generated_color(n, len(entries))
        classes.append(ClassInfo(class_id, str(name), color))
    if ignore_index is None:
        ignore_index = _whole_number(
            data.get("ignore_index", DEFAULT_IGNORE_INDEX),
            "ignore_index",
            0,
            MAX_IGNORE_INDEX,
            path,
            f"it is the mask value meaning 'no label' (default {DEFAULT_IGNORE_INDEX}); leave the line out for the default",
        )
    try:
        return ClassTable(tuple(classes), ignore_index=int(ignore_index))
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
