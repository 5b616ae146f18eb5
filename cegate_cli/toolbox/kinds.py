"""The registry of toolbox module kinds: each kind's name, how it is shown, its sizes, how it attaches.

A kind is a sub-package of `cegate_cli.toolbox` whose `__init__.py` calls `register_kind` once
(peft's `register_peft_method` is the model). Every sub-package is imported, and so registered,
the first time anything asks the registry, so a new kind is a new folder and nothing else:
ModuleKey order, `ToolboxConfig` and its run.json section, `--modules` (and whether `all`
holds the kind: `KindSpec.default`), the kinds' size flags
and `--print-config`, `inspect`, the HTML report and the saved weight names
(`toolbox.<kind>.<layer>.*`) all read it here. A kind from outside the package (a test, a
plugin) calls `register_kind` itself.

This module and every kind's `__init__.py` stay free of torch, so the command line, `inspect`
and `report` list the kinds without loading the model stack; the torch side of a kind (its
`nn.Module`, in the folder's `layer.py`) is imported only when its `attach` hook runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cegate_cli.toolbox.base import BlockSite, ToolboxModule  # noqa: F401 (named in AttachHook)

MAX_WIDTH = 4096
"""Largest LoRA rank and module hidden size: above every ViT embedding width cegate loads."""
NAME = re.compile(r"[a-z][a-z0-9]*\Z")
"""A kind's name: lower-case letters and digits, so `<kind>_<option>` splits at its first `_`."""


@dataclass(frozen=True)
class KindOptions:
    """Base of a kind's sizes: a frozen dataclass whose fields carry their help in
    `field(metadata={"help": ...})`, and `"flag": "--lora-rank"` for those `cegate adapt` takes
    on its command line. run.json stores each field as `<kind>_<field>` (`lora_rank`)."""

    def check(self) -> None:
        """Refuse sizes no module can be built with (an InputError naming the flag or option)."""

    def check_width(self, width: int) -> None:
        """Refuse sizes that do not fit a backbone of embedding width `width`."""


AttachHook = Callable[["BlockSite", Any], "ToolboxModule"]
"""(where: a block of a backbone, the kind's options) -> the module, already in place. A kind in
this package names it as "module:function" (its layer.py), so torch loads only when it runs."""


@dataclass(frozen=True)
class KindSpec:
    """What a kind registers.

    `attach` puts one module into one block and returns it: by wrapping a layer of the block
    (LoRA on attention's q and v, the Adapter on the MLP, the prompts on the whole attention),
    on the block's output through `backbone.frequency` (the Earth-Adapter, which needs the token
    grid of the input), or in the block's place (`site.replace_block(module)`, the module keeping
    the block as `base_layer` and calling it with the block's own arguments). Parameters named
    `base_layer.*` are the backbone's and never the module's own. Every module starts as an exact
    identity.
    """

    name: str
    """In run.json, weight names (`toolbox.<name>.<layer>.*`), `--modules` and `<name>@<layer>`."""
    position: int
    """Where the kind sits in every listing (by block, then kind): lora 10, adapter 20, earth 30.
    It orders ties in every Fisher selection, so an existing kind's position never changes."""
    label: str
    """What `inspect` prints: "spatial (LoRA on q, v)"."""
    title: str
    """The HTML report's column title: "LoRA (spatial)"."""
    color: str
    """The report's colour for the kind, "#rrggbb"."""
    options: type[KindOptions]
    attach: AttachHook | str
    aliases: tuple[str, ...] = ()
    """Other words `--modules` accepts for it ("spatial")."""
    fisher_parameters: tuple[str, ...] = ("*",)
    """Which of the module's own parameters Fisher scores, as `fnmatch` patterns over their names
    (`"*"`: all of them)."""
    default: bool = True
    """Whether the default toolbox holds it (`--modules` not given, or `all`). A kind outside it
    is built only where `--modules` or `ToolboxConfig(kinds=...)` names it, so registering it
    changes no existing run or default."""


@dataclass(frozen=True)
class SizeOption:
    """One field of a kind's options, as run.json, `ToolboxConfig(...)` and the command line see it."""

    kind: str
    field: str
    type: Any
    default: Any
    help: str
    flag: str | None

    @property
    def key(self) -> str:
        """run.json's and `ToolboxConfig`'s name for it: `lora_rank`."""
        return f"{self.kind}_{self.field}"


_SPECS: dict[str, KindSpec] = {}
_ordered: tuple[KindSpec, ...] | None = None
_discovered = False


def register_kind(spec: KindSpec) -> KindSpec:
    """Add a kind; a name, alias or position another kind holds is refused (ValueError)."""
    global _ordered
    if not NAME.match(spec.name):
        raise ValueError(f"kind name {spec.name!r}: lower-case letters and digits, starting with a letter")
    if not (isinstance(spec.options, type) and issubclass(spec.options, KindOptions) and dataclasses.is_dataclass(spec.options)):
        raise ValueError(f"kind {spec.name!r}: options must be a dataclass subclass of KindOptions")
    if any(item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING for item in dataclasses.fields(spec.options)):
        raise ValueError(f"kind {spec.name!r}: every field of its options needs a default")
    words = {word for other in _SPECS.values() for word in (other.name, *other.aliases)}
    taken = [word for word in (spec.name, *spec.aliases) if word in words or word == "all"]
    if taken:
        raise ValueError(f"kind {spec.name!r}: {taken[0]!r} already names a kind")
    if any(other.position == spec.position for other in _SPECS.values()):
        raise ValueError(f"kind {spec.name!r}: position {spec.position} is taken")
    _SPECS[spec.name] = spec
    _ordered = None
    return spec


def unregister_kind(name: str) -> None:
    """Remove a kind registered from outside the package (a test's)."""
    global _ordered
    _SPECS.pop(name, None)
    _ordered = None


def registered_kinds() -> tuple[KindSpec, ...]:
    """Every kind, in listing order."""
    global _ordered
    _discover()
    if _ordered is None:
        _ordered = tuple(sorted(_SPECS.values(), key=lambda spec: spec.position))
    return _ordered


def kind_names() -> tuple[str, ...]:
    """The kinds' names in the order every listing uses."""
    return tuple(spec.name for spec in registered_kinds())


def kind_spec(name: str) -> KindSpec:
    """The registered kind `name` (KeyError if none)."""
    _discover()
    return _SPECS[name]


def attach_hook(spec: KindSpec) -> AttachHook:
    """The kind's attach function (imported on first use when named as "module:function")."""
    if not isinstance(spec.attach, str):
        return spec.attach
    module, _, function = spec.attach.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def default_kind_names() -> tuple[str, ...]:
    """The kinds of the default toolbox (`--modules all`), in listing order."""
    return tuple(spec.name for spec in registered_kinds() if spec.default)


def kind_labels() -> dict[str, str]:
    return {spec.name: spec.label for spec in registered_kinds()}


def size_options() -> list[SizeOption]:
    """Every kind's option fields, kinds in listing order and each kind's fields in its order."""
    options = []
    for spec in registered_kinds():
        hints = typing.get_type_hints(spec.options)
        for item in dataclasses.fields(spec.options):
            default = item.default if item.default is not dataclasses.MISSING else item.default_factory()  # type: ignore[misc]
            options.append(SizeOption(spec.name, item.name, hints[item.name], default, item.metadata.get("help", ""), item.metadata.get("flag")))
    return options


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """`--modules lora,earth` -> ('lora', 'earth'); the kinds' aliases are accepted too. None,
    "" and "all" give the default toolbox (`default_kind_names`)."""
    names = kind_names()
    if text is None or text.strip() in ("", "all"):
        return default_kind_names()
    aliases = {alias: spec.name for spec in registered_kinds() for alias in spec.aliases}
    kinds: list[str] = []
    for part in text.split(","):
        word = part.strip().lower()
        name = aliases.get(word, word)
        if name not in names:
            from cegate_cli.errors import InputError

            raise InputError(f"unknown module kind {part.strip()!r}; choose from {', '.join(names)} (or all)")
        if name not in kinds:
            kinds.append(name)
    return tuple(kinds)


def _discover() -> None:
    """Import every sub-package of `cegate_cli.toolbox` once: each registers its kind."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.ispkg:
            importlib.import_module(f"{__package__}.{module.name}")
