"""The backbone families cegate knows, by name: `register_family`, `get_family`, `list_families`.

Every module of this package whose name ends in `_family` is imported the first time the registry
is asked anything, and registers its family there; a family defined elsewhere (a plugin, a test)
registers itself the same way once imported. Lookups the rest of cegate needs go through here:
which family a spec names (embedded specs, aliases), which family a config.json describes (or,
without one, which family knows the folder's weights by name), and the family a resolved source
or a run folder records.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cegate_cli.backbone.family import NO_MATCH, SPECIFIC_MATCH, BackboneFamily, HubAlias, Pretrained
from cegate_cli.errors import InputError

if TYPE_CHECKING:
    from cegate_cli.backbone.source import BackboneSource

FAMILY_MODULE_SUFFIX = "_family"
F = TypeVar("F", bound=type[BackboneFamily])

_families: dict[str, BackboneFamily] = {}
_discovered = False


def register_family(cls: F) -> F:
    """Class decorator: register one instance of the family `cls` under `cls.name`.

    Refused: a name already taken, or an alias or embedded spec another family claims (a spec
    must name one backbone)."""
    family = cls()
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute `name`")
    if name in _families:
        raise ValueError(f"a backbone family named {name!r} is already registered")
    claimed = set(family.aliases) | set(family.embedded_specs)
    for other in _families.values():
        taken = claimed & (set(other.aliases) | set(other.embedded_specs))
        if taken:
            raise ValueError(f"family {name!r}: {', '.join(sorted(taken))} already name(s) a backbone of family {other.name!r}")
    _families[name] = family
    return cls


def unregister_family(name: str) -> None:
    """Forget a family registered at run time (a plugin unloaded, a test's own family)."""
    _families.pop(name, None)


def _registered() -> dict[str, BackboneFamily]:
    """The families, the built-in `*_family` modules imported on the first call."""
    global _discovered
    if not _discovered:
        _discovered = True
        package = __name__.rsplit(".", 1)[0]
        for module in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
            if module.name.endswith(FAMILY_MODULE_SUFFIX):
                importlib.import_module(f"{package}.{module.name}")
    return _families


def list_families() -> list[str]:
    """The registered families' names (torchgeo's `list_models`)."""
    return list(_registered())


def get_family(name: str) -> BackboneFamily:
    """The family registered as `name`; an unknown one is an InputError that lists the known ones."""
    families = _registered()
    if name not in families:
        raise InputError(f"unknown backbone family {name!r}; this cegate knows {', '.join(families)}")
    return families[name]


def family_of(source: BackboneSource) -> BackboneFamily:
    return get_family(source.kind)


def load_pretrained(source: BackboneSource) -> Pretrained:
    """The pretrained model `source` describes, weights loaded, by the family that reads it."""
    return family_of(source).load(source)


def embedded_family(spec: str) -> BackboneFamily | None:
    """The family that ships `spec` inside the package (exact name), if any."""
    return next((family for family in _registered().values() if spec in family.embedded_specs), None)


def find_alias(name: str) -> tuple[BackboneFamily, HubAlias] | None:
    """The family and Hub repo an alias names (aliases are lower case), if any."""
    for family in _registered().values():
        alias = family.aliases.get(name.lower())
        if alias is not None:
            return family, alias
    return None


def bare_weight_families() -> list[BackboneFamily]:
    """The families whose model folders need no config.json (`BackboneFamily.bare_weights`)."""
    return [family for family in _registered().values() if family.bare_weights]


def known_specs() -> list[str]:
    """Every short name a spec may be: the embedded ones, then the aliases."""
    families = _registered().values()
    return [spec for f in families for spec in f.embedded_specs] + [alias for f in families for alias in f.aliases]


def family_for_config(config: dict[str, Any], spec: str) -> BackboneFamily:
    """The family whose layout a model folder's config.json has: the best match (a specific
    layout over a generic one); none, or two equally specific ones, is an InputError."""
    scored = [(family.config_match(config), family) for family in _registered().values()]
    best = max((score for score, _ in scored), default=NO_MATCH)
    if best == NO_MATCH:
        layouts = "; ".join(f"{family.name}: {family.layout}" for _, family in scored if family.layout)
        raise InputError(f"the config.json of '{spec}' describes no backbone cegate knows ({layouts})")
    matching = [family for score, family in scored if score == best]
    if len(matching) > 1 and best == SPECIFIC_MATCH:
        raise InputError(
            f"the config.json of '{spec}' fits the backbone families {', '.join(f.name for f in matching)} alike; it cannot tell which one to load"
        )
    return matching[0]
