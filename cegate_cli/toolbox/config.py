"""Which kinds a toolbox holds and every registered kind's sizes; stored in run.json so a run
rebuilds the same modules.

Each kind declares its sizes as its own options dataclass (toolbox/kinds.py); this holds one of
each. Outside and before the model stack, they have one flat name each, `<kind>_<field>`:
`ToolboxConfig(lora_rank=4)`, `config.lora_rank` and run.json's `"lora_rank": 4`.

Outside the `toolbox` package's torch modules, so the command line can show these defaults in
`--help` without loading the model stack, as `module_key` does for the modules' names.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from cegate_cli.toolbox.kinds import KindOptions, default_kind_names, kind_names, kind_spec, registered_kinds


@dataclass(frozen=True, init=False)
class ToolboxConfig:
    """`kinds`: those built into every block (default: the default toolbox, every registered kind
    whose `KindSpec.default` holds). `sizes`: (kind, its options) for every registered kind, in
    listing order; `options(kind)` finds one."""

    kinds: tuple[str, ...]
    sizes: tuple[tuple[str, KindOptions], ...]

    def __init__(self, kinds: tuple[str, ...] | None = None, sizes: tuple[tuple[str, KindOptions], ...] | None = None, **flat: Any) -> None:
        """Sizes by their flat names (`lora_rank=4`), over `sizes` (what `dataclasses.replace`
        passes on) or else the kind's defaults. Defaults derived from others (LoRA alpha from the
        rank) are worked out when a kind's options are made, so run.json records the value the run
        used; `dataclasses.replace(config, lora_rank=4)` keeps a derived alpha."""
        given = dict(flat)
        earlier = dict(sizes or ())
        made = []
        for spec in registered_kinds():
            names = [f"{spec.name}_{item.name}" for item in fields(spec.options)]
            mine = {name[len(spec.name) + 1 :]: given.pop(name) for name in names if name in given}
            before = earlier.get(spec.name)
            made.append((spec.name, replace(before, **mine) if before is not None else spec.options(**mine)))
        if given:
            raise TypeError(f"ToolboxConfig: no kind has the size {sorted(given)[0]!r}")
        object.__setattr__(self, "kinds", default_kind_names() if kinds is None else tuple(kinds))
        object.__setattr__(self, "sizes", tuple(made))

    def options(self, kind: str) -> KindOptions:
        """The sizes of kind `kind` (its defaults, for a kind registered after this was made)."""
        made = dict(self.sizes).get(kind)
        return made if made is not None else kind_spec(kind).options()

    def _all_options(self) -> list[tuple[str, KindOptions]]:
        return [(spec.name, self.options(spec.name)) for spec in registered_kinds()]

    def __getattr__(self, name: str) -> Any:
        """`config.lora_rank`: field `rank` of kind `lora`."""
        kind, _, field = name.partition("_")
        if name.startswith("_") or not field or kind not in kind_names():
            raise AttributeError(f"ToolboxConfig has no attribute {name!r}")
        try:
            return getattr(self.options(kind), field)
        except AttributeError:
            raise AttributeError(f"ToolboxConfig has no attribute {name!r}") from None

    def check(self) -> None:
        """Reject kinds nobody registered and sizes no module can be built with, before anything
        is written or loaded."""
        from cegate_cli.errors import InputError

        names = kind_names()
        unknown = [k for k in self.kinds if k not in names]
        if unknown or not self.kinds:
            raise InputError(f"--modules {','.join(self.kinds) or '(none)'}: choose from {', '.join(names)} or all")
        for _, options in self._all_options():
            options.check()

    def check_width(self, width: int) -> None:
        """Reject sizes that do not fit a backbone of embedding width `width` (a LoRA rank above it
        would hold more parameters than the full-rank weight it adapts, for nothing)."""
        for _, options in self._all_options():
            options.check_width(width)

    def to_dict(self) -> dict[str, Any]:
        """run.json's "toolbox" section: the kinds, then the sizes of every kind of the default toolbox
        and of each kind this toolbox holds, under their flat names (a kind outside both is left out,
        so a run written before that kind existed reads back as it was written)."""
        data: dict[str, Any] = {"kinds": list(self.kinds)}
        recorded = set(default_kind_names()) | set(self.kinds)
        for kind, options in self._all_options():
            if kind not in recorded:
                continue
            data.update({f"{kind}_{item.name}": getattr(options, item.name) for item in fields(options)})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolboxConfig:
        """From run.json's "toolbox" section; a value of the wrong type is a FieldTypeError naming it."""
        from cegate_cli.infra.record_fields import FieldTypeError, checked_value, record_fields, require_object

        require_object(data, "toolbox")
        specs = registered_kinds()
        known = {"kinds"} | {f"{spec.name}_{item.name}" for spec in specs for item in fields(spec.options)}
        strange = [key for key in data if key not in known]
        if strange:
            raise FieldTypeError(f"toolbox.{strange[0]} is not a field cegate knows")
        sizes = {
            f"{spec.name}_{name}": value
            for spec in specs
            for name, value in record_fields(spec.options, data, section="toolbox", unknown="drop", prefix=f"{spec.name}_").items()
        }
        if "kinds" in data:
            return cls(kinds=checked_value(data["kinds"], tuple[str, ...], "toolbox.kinds"), **sizes)
        return cls(**sizes)
