"""The backbone's forward path, its gradient cut-off, the tiny backbone and model assembly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from small_models import small_vit as shared_small_vit
from timm.models.vision_transformer import VisionTransformer

from cegate_cli.backbone.tiny import TINY_ARCHITECTURE, TINY_BANDS, build_tiny_vit, tiny_vit_args
from cegate_cli.backbone.vit import Backbone, evenly_spaced_layers
from cegate_cli.backbone.weights_io import pickle_loading_is_safe, read_weights
from cegate_cli.errors import InputError
from cegate_cli.model.decoder import DECODERS
from cegate_cli.model.segmentation import build_model
from cegate_cli.toolbox import Toolbox, ToolboxConfig, attach_toolbox


def perturb(toolbox: Toolbox, seed: int = 0, std: float = 0.05) -> None:
    """Random non-zero values in every toolbox parameter (zero-initialised ones included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in toolbox:
            for parameter in module.own_parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def images(batch: int = 2, channels: int = 4, size: tuple[int, int] = (32, 48), seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, *size, generator=torch.Generator().manual_seed(seed))


def small_vit(**overrides: object) -> VisionTransformer:
    return shared_small_vit(**{"depth": 4, **overrides})  # type: ignore[arg-type]


def tiny_backbone_with_toolbox() -> tuple[Backbone, Toolbox]:
    backbone = Backbone(build_tiny_vit().vit)
    toolbox = attach_toolbox(backbone, ToolboxConfig(lora_rank=4))
    perturb(toolbox)
    return backbone, toolbox


# -- feature levels ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth,expected", [(6, (1, 2, 3, 5)), (12, (2, 5, 8, 11)), (24, (5, 11, 17, 23)), (2, (0, 1)), (1, (0,))])
def test_feature_layers_spread_over_the_depth_and_end_with_the_last_block(depth: int, expected: tuple[int, ...]) -> None:
    assert evenly_spaced_layers(depth) == expected


@pytest.mark.parametrize("overrides", [{}, {"reg_tokens": 4}, {"class_token": False, "global_pool": "avg"}], ids=["cls", "registers", "none"])
def test_features_equal_timms_own_intermediates(overrides: dict[str, object]) -> None:
    """Running the blocks ourselves must give what timm gives, prefix tokens (class, registers) dropped."""
    vit = small_vit(**overrides).eval()
    backbone = Backbone(vit)
    x = images(channels=3, size=(32, 56))
    with torch.no_grad():
        ours = backbone(x)
        theirs = vit.forward_intermediates(x, indices=list(backbone.feature_layers), norm=False, output_fmt="NCHW", intermediates_only=True)
    assert backbone.num_prefix_tokens == vit.num_prefix_tokens
    assert len(ours) == len(theirs) == len(backbone.feature_layers)
    for a, b in zip(ours, theirs):
        assert a.shape == (2, 32, 4, 7)
        assert (a - b).abs().max().item() <= 1e-5


def test_feature_maps_follow_the_input_size() -> None:
    backbone = Backbone(build_tiny_vit().vit)
    for size in [(32, 48), (64, 24), (8, 8)]:
        with torch.no_grad():
            features = backbone(images(1, size=size))
        assert [f.shape for f in features] == [(1, 96, size[0] // 8, size[1] // 8)] * 4


def test_blocks_after_the_last_feature_level_do_not_run() -> None:
    vit = build_tiny_vit().vit
    backbone = Backbone(vit, feature_layers=(1, 3))
    ran: list[int] = []
    for index, block in enumerate(vit.blocks):
        block.register_forward_hook(lambda *_, index=index: ran.append(index))
    with torch.no_grad():
        features = backbone(images(1))
    assert ran == [0, 1, 2, 3]
    assert len(features) == 2


def test_frequency_module_runs_on_its_blocks_output_with_the_token_grid() -> None:
    backbone, toolbox = tiny_backbone_with_toolbox()
    assert sorted(backbone.frequency.keys(), key=int) == [str(i) for i in range(6)]
    order: list[str] = []
    block_out: dict[int, torch.Tensor] = {}
    earth_in: dict[int, tuple[torch.Tensor, tuple[int, int]]] = {}

    def record_block(index: int):  # noqa: ANN202
        def hook(_module: object, _args: object, out: torch.Tensor) -> None:
            order.append(f"block{index}")
            block_out[index] = out

        return hook

    def record_earth(index: int):  # noqa: ANN202
        def hook(_module: object, args: tuple[torch.Tensor, tuple[int, int]], _out: object) -> None:
            order.append(f"earth{index}")
            earth_in[index] = args

        return hook

    for index, block in enumerate(backbone.vit.blocks):
        block.register_forward_hook(record_block(index))
        backbone.frequency[str(index)].register_forward_hook(record_earth(index))
    with torch.no_grad():
        backbone(images(1, size=(48, 80)))
    assert order == [f"{kind}{i}" for i in range(6) for kind in ("block", "earth")]
    for index in range(6):
        tokens, grid = earth_in[index]
        assert torch.equal(tokens, block_out[index])
        assert tuple(grid) == (6, 10)


def test_backbone_needs_dynamic_image_size() -> None:
    args = dict(tiny_vit_args(), dynamic_img_size=False)
    with pytest.raises(InputError, match="dynamic_img_size"):
        Backbone(VisionTransformer(**args))  # type: ignore[arg-type]


def test_input_not_a_multiple_of_the_patch_size_is_a_clear_error() -> None:
    backbone = Backbone(build_tiny_vit().vit)
    with pytest.raises(InputError, match=r"30x48.*patch size 8"):
        backbone(images(1, size=(30, 48)))


# -- gradient cut-off -----------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 3, 5])
def test_blocks_below_grad_from_layer_hold_no_graph(cut: int) -> None:
    backbone, toolbox = tiny_backbone_with_toolbox()
    x = images()
    with torch.no_grad():
        reference = backbone(x)
    backbone.grad_from_layer = cut

    outputs: dict[str, torch.Tensor] = {}
    handles = [backbone.vit.patch_embed.register_forward_hook(lambda _m, _a, out: outputs.__setitem__("embed", out))]
    for index, block in enumerate(backbone.vit.blocks):
        handles.append(block.register_forward_hook(lambda _m, _a, out, i=index: outputs.__setitem__(f"block{i}", out)))
        handles.append(backbone.frequency[str(index)].register_forward_hook(lambda _m, _a, out, i=index: outputs.__setitem__(f"earth{i}", out)))
    features = backbone(x)
    for handle in handles:
        handle.remove()

    assert not outputs["embed"].requires_grad  # frozen patch embedding: never a graph
    for index in range(6):
        for name in (f"block{index}", f"earth{index}"):
            below = index < cut
            assert outputs[name].requires_grad is not below, name
            assert (outputs[name].grad_fn is None) is below, name
    for a, b in zip(features, reference):  # the cut changes memory, not values
        assert (a - b).abs().max().item() <= 1e-6

    loss = sum(f.square().mean() for f in features if f.requires_grad)
    loss.backward()
    for (kind, layer), module in toolbox.modules.items():
        grads = [p.grad for p in module.own_parameters()]
        if layer < cut:
            assert all(g is None for g in grads), (kind, layer)
        else:
            assert all(g is not None for g in grads), (kind, layer)
            assert sum(float(g.abs().sum()) for g in grads) > 0, (kind, layer)


def test_no_graph_anywhere_under_no_grad() -> None:
    backbone, _ = tiny_backbone_with_toolbox()
    with torch.no_grad():
        features = backbone(images(1))
    assert not any(f.requires_grad for f in features)


# -- the tiny backbone -----------------------------------------------------------------------------


def test_tiny_backbone_is_reproducible_and_leaves_the_callers_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = build_tiny_vit()
    second = build_tiny_vit()
    assert torch.equal(torch.rand(3), expected_next)
    assert first.band_names == TINY_BANDS and first.architecture == TINY_ARCHITECTURE
    assert first.vit.patch_embed.proj.in_channels == len(TINY_BANDS)
    assert first.vit.dynamic_img_size
    one, two = first.vit.state_dict(), second.vit.state_dict()
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


def test_tiny_backbone_loads_given_weights(tmp_path) -> None:  # noqa: ANN001
    donor = build_tiny_vit().vit
    with torch.no_grad():
        donor.blocks[2].attn.qkv.weight.mul_(-2.0)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    loaded = build_tiny_vit(path).vit
    assert torch.equal(loaded.blocks[2].attn.qkv.weight, donor.blocks[2].attn.qkv.weight)
    assert not torch.equal(loaded.blocks[2].attn.qkv.weight, build_tiny_vit().vit.blocks[2].attn.qkv.weight)


# -- model assembly -------------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", DECODERS)
def test_build_model_gives_full_resolution_logits(decoder: str) -> None:
    built = build_model(build_tiny_vit(), ("red", "green", "blue"), 5, ToolboxConfig(lora_rank=2), decoder, seed=0)
    assert built.band_mapping.source_channel == (2, 1, 0)
    assert built.model.backbone.in_chans == 3
    assert len(built.toolbox.keys()) == len(ToolboxConfig().kinds) * 6  # the default toolbox in every block
    with torch.no_grad():
        logits = built.model(images(2, channels=3, size=(40, 24)))
    assert logits.shape == (2, 5, 40, 24)
    assert set(built.model.patch_embed_state()) == {"patch_embed.weight", "patch_embed.bias"}


def test_linear_pixel_head_starts_as_the_linear_head_and_learns_per_pixel_scores() -> None:
    """Its pixel path adds nothing at initialisation (same seed, same logits as `linear`); once
    trained, a change to one pixel's bands moves the scores of that pixel and its 3x3
    neighbourhood only, at full resolution, which the patch-grid head alone cannot."""
    linear = build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(), "linear", seed=1).model.eval()
    pixel = build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(), "linear-pixel", seed=1).model.eval()
    batch = images(2, channels=len(TINY_BANDS), size=(32, 32))
    with torch.no_grad():
        assert torch.equal(linear(batch), pixel(batch))
    head = pixel.decoder
    features = [f.detach() for f in pixel.backbone(batch)]
    head(features, batch)[:, 0].mean().backward()
    with torch.no_grad():
        for parameter in head.pixel.parameters():
            parameter -= 0.5 * parameter.grad
        poked = batch.clone()
        poked[0, :, 16, 16] += 3.0
        moved = (head(features, poked) - head(features, batch))[0].abs().sum(0) > 0
    assert moved[15:18, 15:18].all()
    assert moved.sum() == 9
    assert not (linear.decoder(features, poked) - linear.decoder(features, batch)).any()


def test_build_model_is_reproducible_from_its_seed_and_keeps_the_callers_rng() -> None:
    torch.manual_seed(7)
    expected_next = torch.rand(2)
    torch.manual_seed(7)
    a = build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(), seed=4).model.state_dict()
    b = build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(), seed=4).model.state_dict()
    c = build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(), seed=5).model.state_dict()
    assert torch.equal(torch.rand(2), expected_next)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_unknown_decoder_is_an_input_error() -> None:
    with pytest.raises(InputError, match="decoder"):
        build_model(build_tiny_vit(), TINY_BANDS, 3, ToolboxConfig(), decoder="fpn")


def test_pickled_weights_are_read_only_by_a_torch_whose_restricted_unpickler_is_safe(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.ones(2)}, path)
    assert torch.equal(read_weights(path)["w"], torch.ones(2))
    # Before torch 2.6, weights_only=True could be escaped (CVE-2025-32434): no pickle at all then.
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(InputError, match="CVE-2025-32434.*2.6"):
        read_weights(path)
    assert pickle_loading_is_safe("2.6.0") and pickle_loading_is_safe("2.14.1+cu130") and pickle_loading_is_safe("3.0")
    assert not pickle_loading_is_safe("2.5.1") and not pickle_loading_is_safe("1.13.0")
