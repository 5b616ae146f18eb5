"""A toolbox module's identity, its order and its JSON form, in one place that imports no torch.

A module is named by its kind (LoRA, Adapter, Earth-Adapter) and the block it sits in. Runs,
Fisher scores, selections and reports all list modules, and users read them, so everywhere they
appear in the same order (by block, then kind in `KINDS` order) and with the same JSON form
(`{"kind": "lora", "layer": 3}`). `inspect` and `report` read run folders without loading torch,
hence no torch here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

KINDS: tuple[str, ...] = ("lora", "adapter", "earth")
"""The toolbox's kinds, in the order every listing uses."""
KIND_LABELS: dict[str, str] = {
    "lora": "spatial (LoRA on q, v)",
    "adapter": "semantic (bottleneck Adapter on the MLP)",
    "earth": "frequency (Earth-Adapter on the block output)",
}


class ModuleKey(NamedTuple):
    """(kind, layer). A tuple, so `kind, layer = key` and dict lookups by `("lora", 3)` work."""

    kind: str
    layer: int

    @property
    def order(self) -> tuple[int, int]:
        """Sort key: by block, then kind in `KINDS` order (unknown kinds last)."""
        return (self.layer, KINDS.index(self.kind) if self.kind in KINDS else len(KINDS))

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
