"""A toolbox module's identity, its order and its JSON form, in one place that imports no torch.

A module is named by its kind (LoRA, Adapter, Earth-Adapter, any registered kind) and the block
it sits in. Runs, Fisher scores, selections and reports all list modules, and users read them, so
everywhere they appear in the same order (by block, then kind in the registry's order,
toolbox/kinds.py) and with the same JSON form (`{"kind": "lora", "layer": 3}`). `inspect` and
`report` read run folders without loading torch, hence no torch here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from cegate_cli.toolbox.kinds import kind_labels, kind_names


def __getattr__(name: str) -> Any:
    """`KINDS`: the registered kinds' names in listing order; `KIND_LABELS`: name -> label. Read
    from the registry when asked (`from ... import KINDS` keeps the value of that moment; code
    that must see a kind registered later calls `toolbox.kinds.kind_names()`)."""
    if name == "KINDS":
        return kind_names()
    if name == "KIND_LABELS":
        return kind_labels()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ModuleKey(NamedTuple):
    """(kind, layer). A tuple, so `kind, layer = key` and dict lookups by `("lora", 3)` work."""

    kind: str
    layer: int

    @property
    def order(self) -> tuple[int, int]:
        """Sort key: by block, then kind in the registry's order (unknown kinds last)."""
        names = kind_names()
        return (self.layer, names.index(self.kind) if self.kind in names else len(names))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "layer": self.layer}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModuleKey:
        return cls(str(data["kind"]), int(data["layer"]))

    @classmethod
    def parse(cls, text: str) -> ModuleKey:
        """The key `str(key)` wrote ("lora@3"), as run.json's selection history and the benchmarks' JSON name it."""
        kind, layer = text.rsplit("@", 1)
        return cls(kind, int(layer))

    def __str__(self) -> str:
        return f"{self.kind}@{self.layer}"


def in_order(keys: Iterable[tuple[str, int]]) -> list[ModuleKey]:
    """`keys` as ModuleKeys, sorted the way every listing shows them."""
    return sorted((ModuleKey(str(kind), int(layer)) for kind, layer in keys), key=lambda key: key.order)


def keys_to_json(keys: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    """The JSON form of each key, in the order given."""
    return [ModuleKey(str(kind), int(layer)).to_json() for kind, layer in keys]


def keys_from_json(items: Iterable[Mapping[str, Any]]) -> list[ModuleKey]:
    return [ModuleKey.from_json(item) for item in items]
