"""Band adaptation: the user's bands feed a pretrained patch embedding by name.

The reference is always the unmodified model (a deep copy taken before adaptation), fed the
image it was trained on, so each test states what a user relies on: RGB stays RGB, the order of
bands in a file does not matter, and unknown bands start at the activation scale the first
block expects.
"""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from cegate_cli.backbone.band_adapt import BandMapping, adapt_patch_embed, adapt_vit_bands, map_bands
from cegate_cli.backbone.vit import Backbone

RGB = ("red", "green", "blue")


def rgb_vit() -> VisionTransformer:
    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=32,
        patch_size=8,
        in_chans=3,
        num_classes=0,
        embed_dim=32,
        depth=2,
        num_heads=2,
        dynamic_img_size=True,
        global_pool="",
    )
    with torch.no_grad():  # distinct kernels and a non-zero bias, so a wrong copy cannot hide
        vit.patch_embed.proj.bias.normal_()
    return vit.eval()


def rgb_image(size: tuple[int, int] = (32, 48), seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))


def features(vit: VisionTransformer, image: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return Backbone(vit)(image)


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def test_rgb_model_fed_rgb_plus_a_zero_fourth_band_gives_the_original_features() -> None:
    original = rgb_vit()
    adapted = copy.deepcopy(original)
    mapping = adapt_vit_bands(adapted, RGB, (*RGB, "nir"))
    assert mapping == BandMapping((*RGB, "nir"), (0, 1, 2, None)) and mapping.matched == 3
    image = rgb_image()
    four = torch.cat((image, torch.zeros_like(image[:, :1])), dim=1)
    assert max_diff(features(adapted, four), features(original, image)) <= 1e-5
    # The fourth band is really wired in: a non-zero NIR changes the features.
    four[:, 3] = 1.0
    assert max_diff(features(adapted, four), features(original, image)) > 1e-3


def test_reordered_bands_copy_kernels_by_name() -> None:
    original = rgb_vit()
    adapted = copy.deepcopy(original)
    mapping = adapt_vit_bands(adapted, RGB, ("blue", "red", "green"))
    assert mapping.source_channel == (2, 0, 1)
    old, new = original.patch_embed.proj, adapted.patch_embed.proj
    assert torch.equal(new.weight[:, 0], old.weight[:, 2])
    assert torch.equal(new.weight[:, 1], old.weight[:, 0])
    assert torch.equal(new.weight[:, 2], old.weight[:, 1])
    assert torch.equal(new.bias, old.bias)
    image = rgb_image()
    assert max_diff(features(adapted, image[:, [2, 0, 1]]), features(original, image)) <= 1e-5


def test_a_subset_of_bands_sees_what_the_original_sees_with_the_others_dark() -> None:
    original = rgb_vit()
    adapted = copy.deepcopy(original)
    adapt_vit_bands(adapted, RGB, ("green",))
    assert adapted.patch_embed.proj.in_channels == 1
    image = rgb_image()
    dark = torch.zeros_like(image)
    dark[:, 1] = image[:, 1]
    assert max_diff(features(adapted, image[:, 1:2]), features(original, dark)) <= 1e-5


@pytest.mark.parametrize("targets", [("nir",), ("nir", "swir_1"), ("coastal", "nir", "swir_1", "swir_2", "cirrus")])
def test_no_matching_band_keeps_the_response_to_a_uniform_image(targets: tuple[str, ...]) -> None:
    original = rgb_vit()
    adapted = copy.deepcopy(original)
    mapping = adapt_vit_bands(adapted, RGB, targets)
    assert mapping.matched == 0
    for level in (-0.7, 0.3, 2.0):
        assert max_diff(features(adapted, torch.full((1, len(targets), 32, 48), level)), features(original, torch.full((1, 3, 32, 48), level))) <= 1e-5


def test_unnamed_pretrained_bands_match_by_position_only_when_counts_agree() -> None:
    vit = rgb_vit()
    proj = vit.patch_embed.proj
    mapping = adapt_vit_bands(vit, None, ("a", "b", "c"))
    assert mapping.source_channel == (0, 1, 2)
    assert vit.patch_embed.proj is proj  # identity: the pretrained layer is kept as it is

    assert map_bands(None, 3, ("a", "b", "c", "d")).source_channel == (None, None, None, None)


def test_same_bands_in_the_same_order_keep_the_original_layer() -> None:
    vit = rgb_vit()
    proj = vit.patch_embed.proj
    assert adapt_vit_bands(vit, RGB, RGB).matched == 3
    assert vit.patch_embed.proj is proj


def test_unmatched_kernels_are_the_scaled_mean_and_the_layer_keeps_its_geometry() -> None:
    proj = rgb_vit().patch_embed.proj
    weight_before = proj.weight.detach().clone()
    adapted = adapt_patch_embed(proj, BandMapping(("red", "nir", "swir_1", "blue"), (0, None, None, 2)))
    expected_mean = weight_before.mean(dim=1) * (3 / 4)
    assert torch.allclose(adapted.weight[:, 1], expected_mean) and torch.allclose(adapted.weight[:, 2], expected_mean)
    assert torch.equal(adapted.weight[:, 0], weight_before[:, 0])
    assert torch.equal(adapted.weight[:, 3], weight_before[:, 2])
    assert (adapted.out_channels, adapted.kernel_size, adapted.stride) == (proj.out_channels, proj.kernel_size, proj.stride)
    assert torch.equal(proj.weight, weight_before)  # the pretrained layer itself is not modified
