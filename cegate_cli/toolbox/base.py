"""What every toolbox module shares: which kind it is, where it sits, and whether it runs.

A module that is not active is bypassed: its forward returns the base result without touching
its own parameters, so it costs no compute and receives no gradient.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from cegate_cli.module_key import KIND_LABELS, KINDS, ModuleKey  # noqa: F401 (the toolbox's names for them)


class ToolboxModule(nn.Module):
    """Base of LoRA, Adapter and Earth-Adapter: a kind, a layer, an on/off switch."""

    kind: ClassVar[str]

    def __init__(self, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.active = True

    @property
    def key(self) -> ModuleKey:
        return ModuleKey(self.kind, self.layer)

    def own_parameters(self) -> list[nn.Parameter]:
        """The module's trainable parameters, never those of a wrapped base layer."""
        return [p for name, p in self.named_parameters() if not name.startswith("base_layer.")]

    def num_own_parameters(self) -> int:
        return sum(p.numel() for p in self.own_parameters())


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """`--modules lora,earth` -> ('lora', 'earth'); accepts the descriptive names too."""
    if text is None or text.strip() in ("", "all"):
        return KINDS
    aliases = {"spatial": "lora", "semantic": "adapter", "frequency": "earth", "earth-adapter": "earth"}
    kinds = []
    for part in text.split(","):
        name = aliases.get(part.strip().lower(), part.strip().lower())
        if name not in KINDS:
            from cegate_cli.errors import InputError

            raise InputError(f"unknown module kind {part.strip()!r}; choose from {', '.join(KINDS)} (or all)")
        if name not in kinds:
            kinds.append(name)
    return tuple(kinds)
