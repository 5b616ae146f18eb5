"""Insert the toolbox into every block of a backbone, and switch modules on and off.

LoRA and the Adapter wrap the block's own layers (the q and v projections, `mlp`) the way peft
wraps a base layer; the Earth-Adapter sits on the block output, registered in `backbone.frequency`.
`attach_lora` is the one place that knows the attention layouts cegate supports (a fused `qkv`
Linear, or separate q/v Linears under either naming): a new family whose blocks follow one of
them needs no change here. The
`Toolbox` object is the one handle training and inference use: which modules exist, which are
active, which parameters train, merge/unmerge of LoRA for inference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch import nn

from cegate_cli.backbone.base import BlockBackbone
from cegate_cli.errors import InputError
from cegate_cli.toolbox.adapter import MLPAdapter
from cegate_cli.module_key import ModuleKey, in_order
from cegate_cli.toolbox.base import ToolboxModule
from cegate_cli.toolbox_config import ToolboxConfig
from cegate_cli.toolbox.frequency import EarthAdapter
from cegate_cli.toolbox.lora import LoRA, LoRAQKV, LoRAQV


class Toolbox:
    """All candidate modules of one backbone, keyed by (kind, layer)."""

    def __init__(self, backbone: BlockBackbone, modules: dict[ModuleKey, ToolboxModule], config: ToolboxConfig) -> None:
        self.backbone = backbone
        self.modules = modules
        self.config = config

    def __iter__(self) -> Iterator[ToolboxModule]:
        return iter(self.modules[key] for key in self.keys())

    def keys(self) -> list[ModuleKey]:
        """Ordered by layer, then kind in KINDS order: the order of every table and tie-break."""
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
            if key not in wanted and isinstance(module, LoRA):
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

    def parameter_count(self, key: ModuleKey) -> int:
        return self.modules[key].num_own_parameters()

    def backbone_own_named(self) -> dict[str, nn.Parameter]:
        """The backbone's own weights by name (patch embedding and wrapped base layers included,
        every toolbox module's parameters left out), told apart by identity, not by name: what
        the "full" baseline trains and what run.json counts as the backbone."""
        own = {id(p) for module in self.modules.values() for p in module.own_parameters()}
        return {name: p for name, p in self.backbone.named_parameters() if id(p) not in own}

    def merge_lora(self) -> None:
        for module in self.modules.values():
            if isinstance(module, LoRA):
                module.merge()

    def unmerge_lora(self) -> None:
        for module in self.modules.values():
            if isinstance(module, LoRA):
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
    """Wrap every block's qkv and MLP and add a frequency module to its output.

    The backbone's own weights are frozen here: from now on only toolbox modules can train.
    """
    config = config or ToolboxConfig()
    config.check_width(backbone.embed_dim)  # before any module is allocated
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    modules: dict[ModuleKey, ToolboxModule] = {}
    dim = backbone.embed_dim
    assert config.lora_alpha is not None  # ToolboxConfig works it out when it is made
    for layer, block in enumerate(backbone.blocks):
        if "lora" in config.kinds:
            modules[("lora", layer)] = attach_lora(block.attn, layer, config.lora_rank, config.lora_alpha)
        if "adapter" in config.kinds:
            block.mlp = modules[("adapter", layer)] = MLPAdapter(
                block.mlp, layer, dim, config.adapter_hidden, config.adapter_scale
            )
        if "earth" in config.kinds:
            earth = EarthAdapter(
                layer, dim, config.earth_hidden, config.earth_low_freq_ratio, backbone.num_prefix_tokens, init=config.earth_init
            )
            backbone.frequency[str(layer)] = modules[("earth", layer)] = earth
    toolbox = Toolbox(backbone, modules, config)
    toolbox.activate_all()
    return toolbox


SEPARATE_QV_NAMES: tuple[tuple[str, str], ...] = (("q", "v"), ("q_proj", "v_proj"))
"""Attribute names of separate query/value Linears: Galileo's, and timm EVA's (`qkv_fused=False`)."""


def attach_lora(attention: nn.Module, layer: int, rank: int, alpha: float) -> LoRA:
    """Put LoRA on an attention layer's q and v projections, whichever layout it has."""
    qkv = getattr(attention, "qkv", None)
    if isinstance(qkv, nn.Linear):
        if any(getattr(attention, bias, None) is not None for bias in ("q_bias", "v_bias")):
            raise InputError(
                f"block {layer}: this attention adds its own q/v biases to a fused qkv weight, which LoRA "
                "cannot wrap; build the model with separate q/k/v projections (timm: qkv_fused=False)"
            )
        lora: LoRA = LoRAQKV(qkv, layer, rank, alpha)
        attention.qkv = lora
        return lora
    for q_name, v_name in SEPARATE_QV_NAMES:
        query, value = getattr(attention, q_name, None), getattr(attention, v_name, None)
        if isinstance(query, nn.Linear) and isinstance(value, nn.Linear):
            separate = LoRAQV(query, value, layer, rank, alpha)
            setattr(attention, q_name, separate)
            setattr(attention, v_name, separate.value_projection)
            return separate
    supported = ", ".join(["a fused Linear `qkv`"] + [f"Linears `{q}` and `{v}`" for q, v in SEPARATE_QV_NAMES])
    raise InputError(
        f"block {layer}: LoRA supports attention with {supported}; found {type(attention).__name__} without them"
    )
