"""The toolbox: identity at insertion, LoRA equal to peft's, merge/unmerge, bypass, save/load.

Every module is perturbed (random non-zero values in all its parameters, the zero-initialised
output projections included) wherever a test compares arithmetic, so a module that silently did
nothing could not pass.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from small_models import small_vit as shared_small_vit
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from cegate_cli.backbone.tiny import TINY_BANDS, build_tiny_vit
from cegate_cli.backbone.vit import Backbone
from cegate_cli.errors import InputError
from cegate_cli.model.segmentation import build_model
from cegate_cli.toolbox import (
    KINDS,
    EarthAdapter,
    LoRAQKV,
    MLPAdapter,
    Toolbox,
    ToolboxConfig,
    attach_toolbox,
    parse_kinds,
    split_frequencies,
)

CROP = (32, 48)  # 4 x 6 tokens with the tiny backbone's patch 8: small and not square


def perturb(toolbox: Toolbox, seed: int = 0, std: float = 0.05) -> None:
    """Random non-zero values in every toolbox parameter, so each module changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in toolbox:
            for parameter in module.own_parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def images(batch: int = 2, channels: int = 4, size: tuple[int, int] = CROP, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, *size, generator=torch.Generator().manual_seed(seed))


def small_vit(**overrides: object) -> VisionTransformer:
    return shared_small_vit(**{"depth": 3, **overrides})  # type: ignore[arg-type]


def tiny_model(kinds: tuple[str, ...] = KINDS, seed: int = 0, decoder: str = "unet"):
    return build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(kinds=kinds, lora_rank=4), decoder, seed)


BACKBONES = {
    "tiny": lambda: build_tiny_vit().vit,
    "class_token": lambda: small_vit(),
    "registers": lambda: small_vit(reg_tokens=4),
    "no_prefix": lambda: small_vit(class_token=False, global_pool="avg"),
}


# -- identity at insertion ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_inserting_full_toolbox_leaves_features_unchanged(name: str) -> None:
    vit = BACKBONES[name]().eval()
    backbone = Backbone(vit)
    x = images(channels=backbone.in_chans)
    with torch.no_grad():
        before = backbone(x)
        toolbox = attach_toolbox(backbone)
        assert toolbox.active_keys == toolbox.keys()  # everything active, still an identity
        after = backbone(x)
    assert len(toolbox.keys()) == 3 * backbone.depth
    for a, b in zip(before, after):
        assert (a - b).abs().max().item() <= 1e-6
    # The comparison is not vacuous: once trained (perturbed), the modules do change the features.
    perturb(toolbox)
    with torch.no_grad():
        moved = backbone(x)
    assert (moved[-1] - before[-1]).abs().max().item() > 1e-3


def test_attach_freezes_the_backbone_and_wraps_the_named_layers() -> None:
    backbone = Backbone(build_tiny_vit().vit)
    toolbox = attach_toolbox(backbone, ToolboxConfig())
    block = backbone.vit.blocks[2]
    assert block.attn.qkv is toolbox.modules[("lora", 2)]
    assert block.mlp is toolbox.modules[("adapter", 2)]
    assert backbone.frequency["2"] is toolbox.modules[("earth", 2)]
    trainable = {id(p) for p in toolbox.trainable_parameters()}
    for name, parameter in backbone.named_parameters():
        is_toolbox = any(id(parameter) == id(p) for m in toolbox for p in m.own_parameters())
        assert parameter.requires_grad == is_toolbox, name
        assert (id(parameter) in trainable) == is_toolbox, name


def test_attach_only_the_chosen_kinds() -> None:
    backbone = Backbone(build_tiny_vit().vit)
    toolbox = attach_toolbox(backbone, ToolboxConfig(kinds=("lora", "earth")))
    assert {kind for kind, _ in toolbox.keys()} == {"lora", "earth"}
    assert not any(isinstance(m, MLPAdapter) for m in backbone.modules())
    assert sorted(backbone.frequency.keys(), key=int) == [str(i) for i in range(backbone.depth)]
    assert toolbox.keys()[:2] == [("lora", 0), ("earth", 0)]  # layer first, then kind order


def test_lora_rejects_a_qkv_that_is_not_three_equal_parts() -> None:
    with pytest.raises(InputError, match="block 4"):
        LoRAQKV(nn.Linear(8, 20), layer=4)


def test_parse_kinds_accepts_names_and_aliases_and_rejects_unknown() -> None:
    assert parse_kinds(None) == parse_kinds("all") == ("lora", "adapter", "earth")  # the default toolbox
    assert parse_kinds("frequency, spatial,lora") == ("earth", "lora")
    assert parse_kinds("vpt,lora") == ("prompt", "lora") and set(KINDS) == {"lora", "adapter", "earth", "prompt"}
    with pytest.raises(InputError, match="'ia3'"):
        parse_kinds("lora,ia3")


# -- LoRA against peft -----------------------------------------------------------------------


class _QV(nn.Module):
    """Separate q and v projections: the layout peft's LoRA targets."""

    def __init__(self, qkv: nn.Linear, dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(qkv.in_features, dim)
        self.v = nn.Linear(qkv.in_features, dim)
        with torch.no_grad():
            self.q.weight.copy_(qkv.weight[:dim])
            self.q.bias.copy_(qkv.bias[:dim])
            self.v.weight.copy_(qkv.weight[2 * dim :])
            self.v.bias.copy_(qkv.bias[2 * dim :])


@pytest.mark.parametrize("rank,alpha", [(4, 8.0), (3, 5.0)])
def test_lora_equals_peft_lora_with_the_same_a_and_b(rank: int, alpha: float) -> None:
    backbone = Backbone(build_tiny_vit().vit)
    toolbox = attach_toolbox(backbone, ToolboxConfig(kinds=("lora",), lora_rank=rank, lora_alpha=alpha))
    perturb(toolbox, std=0.2)
    lora: LoRAQKV = toolbox.modules[("lora", 3)]  # type: ignore[assignment]
    dim = lora.dim

    reference = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=["q", "v"]), _QV(lora.base_layer, dim))
    with torch.no_grad():
        reference.q.lora_A["default"].weight.copy_(lora.lora_A_q)
        reference.q.lora_B["default"].weight.copy_(lora.lora_B_q)
        reference.v.lora_A["default"].weight.copy_(lora.lora_A_v)
        reference.v.lora_B["default"].weight.copy_(lora.lora_B_v)

    tokens = torch.randn(2, 25, lora.base_layer.in_features, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        q, k, v = lora(tokens).split(dim, dim=-1)
        base_k = lora.base_layer(tokens)[..., dim : 2 * dim]
        q_ref, v_ref = reference.q(tokens), reference.v(tokens)
        q_base = reference.q.base_layer(tokens)
    assert (q - q_ref).abs().max().item() <= 1e-5
    assert (v - v_ref).abs().max().item() <= 1e-5
    assert torch.equal(k, base_k)  # the key third is never adapted
    assert (q_ref - q_base).abs().max().item() > 1e-2  # the update is not negligible
    # peft's delta weight (B A scaling) matches ours on the q and v rows, zero on k.
    delta = lora.get_delta_weight()
    assert torch.allclose(delta[:dim], reference.q.get_delta_weight("default"), atol=1e-6)
    assert torch.allclose(delta[2 * dim :], reference.v.get_delta_weight("default"), atol=1e-6)
    assert torch.count_nonzero(delta[dim : 2 * dim]) == 0


def test_lora_starts_as_identity_with_b_zero_and_a_random() -> None:
    lora = LoRAQKV(nn.Linear(12, 36), layer=0, rank=2, alpha=4.0)
    assert lora.scaling == 2.0
    assert torch.count_nonzero(lora.lora_B_q) == 0 and torch.count_nonzero(lora.lora_B_v) == 0
    assert torch.count_nonzero(lora.lora_A_q) > 0 and torch.count_nonzero(lora.lora_A_v) > 0


# -- merge / unmerge -----------------------------------------------------------------------------


def test_merged_equals_unmerged_and_unmerge_restores_the_base_weights() -> None:
    built = tiny_model()
    model, toolbox = built.model.eval(), built.toolbox
    perturb(toolbox, std=0.1)
    x = images()
    original = {key: m.base_layer.weight.detach().clone() for key, m in toolbox.modules.items() if key[0] == "lora"}
    with torch.no_grad():
        unmerged = model(x)
        toolbox.merge_lora()
        assert all(toolbox.modules[key].merged for key in original)
        merged = model(x)
    assert (merged - unmerged).abs().max().item() <= 1e-5
    changed = [key for key in original if not torch.equal(toolbox.modules[key].base_layer.weight, original[key])]
    assert changed == list(original)  # merging really wrote into every base weight
    toolbox.merge_lora()  # a second merge is a no-op, not a double update
    with torch.no_grad():
        assert (model(x) - unmerged).abs().max().item() <= 1e-5
    toolbox.unmerge_lora()
    for key, weight in original.items():
        assert not toolbox.modules[key].merged
        assert (toolbox.modules[key].base_layer.weight - weight).abs().max().item() <= 1e-6
    with torch.no_grad():
        assert (model(x) - unmerged).abs().max().item() <= 1e-5


def test_merge_touches_only_active_lora() -> None:
    built = tiny_model(kinds=("lora",))
    toolbox = built.toolbox
    perturb(toolbox)
    toolbox.set_active([("lora", 4)])
    before = {key: m.base_layer.weight.detach().clone() for key, m in toolbox.modules.items()}
    toolbox.merge_lora()
    for key, module in toolbox.modules.items():
        assert module.merged == (key == ("lora", 4))
        assert torch.equal(module.base_layer.weight, before[key]) == (key != ("lora", 4))


def test_merge_refuses_non_finite_weights_and_leaves_the_base_alone() -> None:
    lora = LoRAQKV(nn.Linear(6, 18), layer=7, rank=2)
    with torch.no_grad():
        lora.lora_B_v.fill_(float("inf"))
    weight = lora.base_layer.weight.detach().clone()
    with pytest.raises(ValueError, match="block 7"):
        lora.merge()
    assert not lora.merged
    assert torch.equal(lora.base_layer.weight, weight)


# -- bypass: no compute, no gradient --------------------------------------------------------------


class _ParameterUse(TorchFunctionMode):
    """Records which toolbox modules had a parameter passed to any torch operation."""

    def __init__(self, owners: dict[int, tuple[str, int]]) -> None:
        super().__init__()
        self.owners = owners
        self.used: set[tuple[str, int]] = set()
        self.fft_calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        for value in tree_flatten((args, kwargs))[0]:
            if isinstance(value, torch.Tensor) and id(value) in self.owners:
                self.used.add(self.owners[id(value)])
        if func is torch.fft.fft2:
            self.fft_calls += 1
        return func(*args, **kwargs)


def test_bypassed_modules_are_not_computed_and_get_no_gradient() -> None:
    built = tiny_model()
    model, toolbox = built.model, built.toolbox
    perturb(toolbox)
    active = [("lora", 1), ("adapter", 3), ("earth", 4), ("lora", 5)]
    toolbox.set_active(active)
    inactive = [key for key in toolbox.keys() if key not in active]

    calls: dict[tuple[str, int], int] = {key: 0 for key in toolbox.keys()}
    handles = []
    for key in toolbox.keys():
        module = toolbox.modules[key]
        for name, sub in module.named_modules():
            if name and not name.startswith("base_layer"):  # the module's own layers, not the wrapped one

                def count(*_: object, key: tuple[str, int] = key) -> None:
                    calls[key] += 1

                handles.append(sub.register_forward_hook(count))
    owners = {id(p): key for key in toolbox.keys() for p in toolbox.modules[key].own_parameters()}
    usage = _ParameterUse(owners)
    try:
        with usage:
            loss = model(images()).square().mean()
    finally:
        for handle in handles:
            handle.remove()
    loss.backward()

    assert usage.used == set(active)
    assert usage.fft_calls == 1  # only the one active Earth-Adapter transforms its tokens
    for key in inactive:
        assert calls[key] == 0, key
        for parameter in toolbox.modules[key].own_parameters():
            assert not parameter.requires_grad and parameter.grad is None, key
    for key in active:
        if key[0] != "lora":
            assert calls[key] > 0, key
        grads = [p.grad for p in toolbox.modules[key].own_parameters()]
        assert all(g is not None for g in grads), key
        assert sum(float(g.abs().sum()) for g in grads) > 0, key
    assert {id(p) for p in toolbox.trainable_parameters()} == {id(p) for key in active for p in toolbox.modules[key].own_parameters()}


def test_bypassed_parameters_are_off_the_graph_even_if_marked_trainable() -> None:
    """Stronger than requires_grad=False: a bypassed module's tensors never enter the graph."""
    built = tiny_model()
    model, toolbox = built.model, built.toolbox
    perturb(toolbox)
    toolbox.set_active([("adapter", 5)])
    for module in toolbox:
        for parameter in module.own_parameters():
            parameter.requires_grad_(True)
    model(images()).square().mean().backward()
    for key in toolbox.keys():
        has_grad = [p.grad is not None for p in toolbox.modules[key].own_parameters()]
        assert all(has_grad) if key == ("adapter", 5) else not any(has_grad), key


def test_set_active_selects_exactly_and_rejects_unknown_modules() -> None:
    toolbox = tiny_model().toolbox
    toolbox.set_active([("earth", 2), ("lora", 4)])
    assert toolbox.active_keys == [("earth", 2), ("lora", 4)]
    assert toolbox.lowest_active_layer() == 2
    toolbox.set_active([])
    assert toolbox.active_keys == [] and toolbox.lowest_active_layer() is None
    assert toolbox.trainable_parameters() == []
    with pytest.raises(InputError, match="lora"):
        toolbox.set_active([("lora", 99)])
    assert toolbox.parameter_count(("lora", 0)) == 2 * 2 * 4 * 96  # A and B for q and v, rank 4, dim 96


def test_adapter_adds_a_scaled_bottleneck_in_parallel_to_the_mlp() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
    adapter = MLPAdapter(mlp, layer=0, dim=8, hidden=4, scale=0.5)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        assert torch.equal(adapter(x), mlp(x))  # identity at initialisation
        nn.init.normal_(adapter.bottleneck.up.weight)
        nn.init.normal_(adapter.bottleneck.up.bias)
        b = adapter.bottleneck
        expected = mlp(x) + b.up(torch.nn.functional.gelu(b.down(x))) * 0.5
        assert torch.allclose(adapter(x), expected, atol=1e-6)


# -- Earth-Adapter ------------------------------------------------------------------------------


def test_frequency_split_sums_back_to_the_input() -> None:
    grid = torch.randn(2, 5, 6, 10, generator=torch.Generator().manual_seed(2))
    for ratio in (0.1, 0.25, 0.5, 0.9):
        low, high = split_frequencies(grid, ratio)
        assert low.shape == high.shape == grid.shape
        assert (low + high - grid).abs().max().item() <= 1e-5
        assert low.abs().max().item() > 0 and high.abs().max().item() > 0


def test_low_part_of_a_constant_image_is_the_image() -> None:
    grid = torch.full((1, 3, 6, 10), 2.5)
    grid[:, 1] = -0.75
    low, high = split_frequencies(grid, 0.25)
    assert (low - grid).abs().max().item() <= 1e-5
    assert high.abs().max().item() <= 1e-5


def test_split_keeps_slow_waves_low_and_the_finest_pattern_high_on_a_non_square_grid() -> None:
    """6 x 10 grid: a one-cycle wave across the width is low, a 2-pixel checkerboard is high.

    Swapping height and width anywhere would change which frequencies the box keeps.
    """
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(10.0), indexing="ij")
    slow = torch.cos(2 * torch.pi * xs / 10) + 3.0
    fine = (-1.0) ** (ys + xs)
    low, high = split_frequencies((slow + fine)[None, None], 0.5)
    assert (low[0, 0] - slow).abs().max().item() <= 1e-5
    assert (high[0, 0] - fine).abs().max().item() <= 1e-5


def _reference_low_pass(grid: torch.Tensor, ratio: float) -> torch.Tensor:
    """The same centred box written with fftfreq (no shifts): keep |f| < half on each axis."""
    height, width = grid.shape[-2:]
    half_h, half_w = max(1, round(height * ratio / 2)), max(1, round(width * ratio / 2))
    fy = torch.fft.fftfreq(height) * height
    fx = torch.fft.fftfreq(width) * width
    mask = (fy.abs()[:, None] < half_h) & (fx.abs()[None, :] < half_w)
    return torch.fft.ifft2(torch.fft.fft2(grid, norm="ortho") * mask, norm="ortho").real


@pytest.mark.parametrize("prefix,grid", [(1, (6, 10)), (5, (4, 6)), (0, (10, 6))])
def test_earth_adapter_matches_a_reference_on_non_square_grids(prefix: int, grid: tuple[int, int]) -> None:
    dim, ratio = 12, 0.5
    earth = EarthAdapter(layer=0, dim=dim, hidden=4, low_freq_ratio=ratio, num_prefix_tokens=prefix)
    generator = torch.Generator().manual_seed(4)
    tokens = torch.randn(2, prefix + grid[0] * grid[1], dim, generator=generator)
    with torch.no_grad():
        assert torch.equal(earth(tokens, grid), tokens)  # identity at initialisation
        for parameter in earth.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        out = earth(tokens, grid)

        patches = tokens[:, prefix:]
        maps = patches.transpose(1, 2).reshape(2, dim, *grid)
        low = _reference_low_pass(maps, ratio)
        low_tokens = low.flatten(2).transpose(1, 2)
        high_tokens = patches - low_tokens
        weights = earth.router(patches).softmax(-1)
        mixed = sum(weights[..., i : i + 1] * earth.experts[i](part) for i, part in enumerate((patches, low_tokens, high_tokens)))
        expected = patches + mixed * earth.scale
    assert torch.equal(out[:, :prefix], tokens[:, :prefix])  # class and register tokens pass unchanged
    assert (out[:, prefix:] - expected).abs().max().item() <= 1e-5


def test_earth_adapter_follows_crop_size_changes_between_calls() -> None:
    built = tiny_model(kinds=("earth",))
    backbone, toolbox = built.model.backbone.eval(), built.toolbox
    perturb(toolbox, std=0.2)
    seen: list[tuple[int, int]] = []
    handle = backbone.frequency["0"].register_forward_hook(lambda _m, args, _o: seen.append(tuple(args[1])))
    sizes = [(32, 48), (48, 80), (40, 24), (32, 48)]
    outputs = []
    try:
        with torch.no_grad():
            for size in sizes:
                features = backbone(images(1, size=size, seed=9))
                assert all(f.shape == (1, 96, size[0] // 8, size[1] // 8) for f in features)
                outputs.append(features)
    finally:
        handle.remove()
    assert seen == [(h // 8, w // 8) for h, w in sizes]
    assert all(torch.equal(a, b) for a, b in zip(outputs[0], outputs[-1]))  # no state left from other sizes


# -- saving and loading the trained modules --------------------------------------------------------


def test_state_round_trip_onto_a_fresh_model_gives_identical_outputs() -> None:
    source = tiny_model(seed=0)
    perturb(source.toolbox, seed=11)
    chosen = [("lora", 1), ("adapter", 2), ("earth", 2), ("earth", 5)]
    source.toolbox.set_active(chosen)
    state = source.toolbox.state_dict_of(chosen)
    assert state and all(name.startswith("toolbox.") and "base_layer" not in name for name in state)
    assert {tuple(name.split(".")[1:3]) for name in state} == {(k, str(layer)) for k, layer in chosen}

    fresh = tiny_model(seed=1)  # different initial values everywhere
    loaded = fresh.toolbox.load_state({**state, "decoder.ignored": torch.zeros(1)})
    assert loaded == chosen
    fresh.toolbox.set_active(loaded)
    fresh.model.decoder.load_state_dict(source.model.decoder.state_dict())
    x = images()
    with torch.no_grad():
        expected = source.model.eval()(x)
        got = fresh.model.eval()(x)
    assert torch.equal(got, expected)


def test_load_state_rejects_weights_for_a_module_the_toolbox_lacks() -> None:
    source = tiny_model(kinds=("lora", "earth"))
    state = source.toolbox.state_dict_of([("earth", 3)])
    lora_only = tiny_model(kinds=("lora",))
    with pytest.raises(InputError, match="block 3"):
        lora_only.toolbox.load_state(state)


def test_earth_adapter_kaiming_init_gives_every_parameter_gradient_at_once() -> None:
    """Issue 12: the Earth-Adapter authors' init (Kaiming ReLU experts, scale 0.1) against cegate's
    identity init, where only the up projections (and nothing upstream of them) get gradient."""
    grid, dim = (4, 5), 12
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randn(2, 1 + grid[0] * grid[1], dim, generator=generator)

    def gradients(init: str) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        earth = EarthAdapter(layer=0, dim=dim, hidden=4, num_prefix_tokens=1, init=init)
        earth(tokens, grid).pow(2).sum().backward()
        return {name: p.grad for name, p in earth.named_parameters()}

    kaiming = gradients("kaiming")
    assert all(g is not None and g.abs().sum() > 0 for name, g in kaiming.items() if not name.endswith("bias")), kaiming.keys()
    identity = gradients("identity")
    silent = sorted(name for name, g in identity.items() if g is None or g.abs().sum() == 0)
    assert silent and all(".down." in name or name.startswith("router") or name == "scale" for name in silent), silent

    earth = EarthAdapter(layer=0, dim=dim, hidden=4, init="kaiming")
    assert earth.scale.item() == pytest.approx(0.1)
    assert all(isinstance(expert.act, torch.nn.ReLU) for expert in earth.experts)
    with torch.no_grad():
        assert not torch.equal(earth(tokens, grid), tokens)  # not an identity: the price of the authors' init
    with pytest.raises(ValueError, match="choose identity or kaiming"):
        EarthAdapter(layer=0, dim=dim, init="zeros")


def test_toolbox_config_rejects_an_unknown_earth_init_and_round_trips_it() -> None:
    from cegate_cli.errors import InputError

    with pytest.raises(InputError, match="Earth-Adapter init 'xavier'"):
        ToolboxConfig(earth_init="xavier").check()
    config = ToolboxConfig(earth_init="kaiming")
    assert ToolboxConfig.from_dict(config.to_dict()) == config
    assert ToolboxConfig.from_dict({k: v for k, v in ToolboxConfig().to_dict().items() if k != "earth_init"}).earth_init == "identity"
