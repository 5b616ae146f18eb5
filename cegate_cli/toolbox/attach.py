"""Insert the toolbox into every block of a backbone, and switch modules on and off.

Each registered kind (kinds.py) puts its module into a block through its own `attach` hook:
LoRA and the Adapter wrap the block's own layers the way peft wraps a base layer, the
Earth-Adapter sits on the block output. The `Toolbox` object is the one handle training and
inference use: which modules exist, which are active, which parameters train and which Fisher
scores, merge/unmerge (LoRA) for inference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase

from torch import nn

from cegate_cli.backbone.base import BlockBackbone
from cegate_cli.errors import InputError
from cegate_cli.toolbox.base import BlockSite, ToolboxModule
from cegate_cli.toolbox.config import ToolboxConfig
from cegate_cli.toolbox.kinds import attach_hook, kind_spec, registered_kinds
from cegate_cli.toolbox.module_key import ModuleKey, in_order


class Toolbox:
    """All candidate modules of one backbone, keyed by (kind, layer)."""

    def __init__(self, backbone: BlockBackbone, modules: dict[ModuleKey, ToolboxModule], config: ToolboxConfig) -> None:
        self.backbone = backbone
        self.modules = modules
        self.config = config

    def __iter__(self) -> Iterator[ToolboxModule]:
        return iter(self.modules[key] for key in self.keys())

    def keys(self) -> list[ModuleKey]:
        """Ordered by layer, then kind in the registry's order: the order of every table and tie-break."""
        return in_order(self.modules)

    @property
    def active_keys(self) -> list[ModuleKey]:
        return [key for key in self.keys() if self.modules[key].active]

    def set_active(self, keys: Iterable[ModuleKey]) -> None:
        """Activate exactly `keys`; everything else is bypassed and frozen."""
        wanted = set(keys)
        unknown = wanted - set(self.modules)
        if unknown:
            raise InputError(f"no such toolbox modules: {sorted(unknown)}")
        for key, module in self.modules.items():
            if key not in wanted:
                module.unmerge()  # a bypassed module must not leave its update inside the base weight
            module.active = key in wanted
            for parameter in module.own_parameters():
                parameter.requires_grad_(module.active)

    def activate_all(self) -> None:
        self.set_active(self.modules)

    def lowest_active_layer(self) -> int | None:
        layers = [module.layer for module in self.modules.values() if module.active]
        return min(layers) if layers else None

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for key in self.active_keys for p in self.modules[key].own_parameters()]

    def scored_parameters(self, key: ModuleKey) -> list[nn.Parameter]:
        """The parameters of module `key` that Fisher scores: those its kind names (all by default)."""
        patterns = kind_spec(key[0]).fisher_parameters
        return [
            p
            for name, p in self.modules[key].named_parameters()
            if not name.startswith("base_layer.") and any(fnmatchcase(name, pattern) for pattern in patterns)
        ]

    def parameter_count(self, key: ModuleKey) -> int:
        return self.modules[key].num_own_parameters()

    def backbone_own_named(self) -> dict[str, nn.Parameter]:
        """The backbone's own weights by name (patch embedding and wrapped base layers included,
        every toolbox module's parameters left out), told apart by identity, not by name: what
        the "full" baseline trains and what run.json counts as the backbone."""
        own = {id(p) for module in self.modules.values() for p in module.own_parameters()}
        return {name: p for name, p in self.backbone.named_parameters() if id(p) not in own}

    def merge_lora(self) -> None:
        """Fold every active module that can (LoRA) into the base weights, for inference."""
        for module in self.modules.values():
            module.merge()

    def unmerge_lora(self) -> None:
        for module in self.modules.values():
            module.unmerge()

    def state_dict_of(self, keys: Iterable[ModuleKey]) -> dict[str, object]:
        """Parameters of the given modules under stable names `<kind>.<layer>.<param>`."""
        state = {}
        for key in keys:
            module = self.modules[key]
            for name, tensor in module.named_parameters():
                if not name.startswith("base_layer."):
                    state[f"toolbox.{key[0]}.{key[1]}.{name}"] = tensor.detach()
        return state

    def load_state(self, state: dict[str, object]) -> list[ModuleKey]:
        """Load `toolbox.*` tensors; return the modules that received weights."""
        loaded: set[ModuleKey] = set()
        for full_name, tensor in state.items():
            if not full_name.startswith("toolbox."):
                continue
            try:
                _, kind, layer_text, name = full_name.split(".", 3)
                key = ModuleKey(kind, int(layer_text))
            except ValueError:
                raise InputError(f"unexpected weight name {full_name!r}") from None
            if key not in self.modules:
                raise InputError(f"weights for {kind} in block {layer_text} but the toolbox has no such module")
            parameter = dict(self.modules[key].named_parameters()).get(name)
            if parameter is None or parameter.shape != tensor.shape:  # type: ignore[attr-defined]
                raise InputError(
                    f"weight {full_name!r} does not fit the toolbox "
                    f"({'no such parameter' if parameter is None else f'shape {tuple(tensor.shape)} vs {tuple(parameter.shape)}'})"  # type: ignore[attr-defined]
                )
            parameter.data.copy_(tensor)  # type: ignore[arg-type]
            loaded.add(key)
        return in_order(loaded)


def attach_toolbox(backbone: BlockBackbone, config: ToolboxConfig | None = None) -> Toolbox:
    """Put one module of every kind in `config.kinds` into every block, block by block and, in
    each block, kind by kind in listing order (the order the modules draw their random
    initial values in, so a seed gives the same toolbox).

    The backbone's own weights are frozen here: from now on only toolbox modules can train.
    """
    config = config or ToolboxConfig()
    config.check_width(backbone.embed_dim)  # before any module is allocated
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    kinds = [spec for spec in registered_kinds() if spec.name in config.kinds]
    hooks = {spec.name: attach_hook(spec) for spec in kinds}
    modules: dict[ModuleKey, ToolboxModule] = {}
    for layer in range(len(backbone.blocks)):
        for spec in kinds:
            module = hooks[spec.name](BlockSite(backbone, layer), config.options(spec.name))
            if module.kind != spec.name or module.layer != layer:
                raise ValueError(f"kind {spec.name!r}: its attach hook returned {module.kind}@{module.layer} for block {layer}")
            modules[ModuleKey(spec.name, layer)] = module
    toolbox = Toolbox(backbone, modules, config)
    toolbox.activate_all()
    return toolbox
