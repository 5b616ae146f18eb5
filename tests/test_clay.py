"""cegate's Clay encoder computes what the authors' encoder computes, and takes their weights strictly.

The reference (tests/fixtures/clay) was made by tools/clay_reference.py, which runs the authors'
own code (github.com/Clay-foundation/model) on seeded random weights and real band sets.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cegate_cli.backbone.clay import (
    AUTHORS_SIZES,
    CLAY_V1_5,
    CLAY_V1_BASE,
    ClayConfig,
    ClayEncoder,
    Conditions,
    authors_key,
    authors_state_dict,
    config_from_state,
    encode_location,
    encode_time,
    encoder_state,
    expected_authors_shapes,
    load_authors_state,
    own_key,
)
from cegate_cli.backbone.clay_backbone import ClayBackbone
from cegate_cli.backbone.clay_bands import PLATFORMS, band_table, choose_platform, platform_named
from cegate_cli.backbone.weights_io import read_weights
from cegate_cli.errors import InputError
from cegate_cli.toolbox.attach import attach_toolbox
from cegate_cli.toolbox.lora.layer import LoRAQKV

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "clay"
REFERENCE = FIXTURE / "reference.safetensors"
WEIGHTS = FIXTURE / "small_encoder.safetensors"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    with safe_open(str(REFERENCE), "pt") as handle:
        return json.loads(handle.metadata()["clay"])


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(REFERENCE))


def authors_weights() -> dict[str, torch.Tensor]:
    """The fixture's weights (float16-exact values stored as float16) in float32."""
    return {key: value.float() for key, value in load_file(str(WEIGHTS)).items()}


def small_config(info: dict[str, Any]) -> ClayConfig:
    s = info["small"]
    return ClayConfig(s["dim"], s["depth"], s["heads"], s["dim_head"], float(s["mlp_ratio"]), s["patch_size"])


@pytest.fixture(scope="module")
def encoder(info: dict[str, Any]) -> ClayEncoder:
    model = ClayEncoder(small_config(info)).eval()
    load_authors_state(model, authors_weights(), str(WEIGHTS))
    return model


def case_tensors(reference: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    return {key[len(name) + 1 :]: value for key, value in reference.items() if key.startswith(name + ".")}


def run(encoder: ClayEncoder, case: dict[str, torch.Tensor], **changes: Any) -> dict[str, torch.Tensor]:
    """Embedding, every block's output and the encoder output for the case's inputs (or `changes`)."""
    inputs = {"images": case["pixels"], "wavelengths_um": case["waves"], "gsd_m": case["gsd"], "time": case["time"], "location": case["latlon"], **changes}
    with torch.no_grad():
        tokens, _ = encoder.embed(**inputs)
        out = {"embedded": tokens[:, 1:]}
        for index, block in enumerate(encoder.blocks):
            tokens = out[f"block.{index}"] = block(tokens)
        out["encoded"] = encoder.norm(tokens)
    return out


def largest_difference(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    keys = [key for key in got if key in expected]
    assert keys
    return max((got[key] - expected[key]).abs().max().item() for key in keys)


CASES = ("sentinel2", "sentinel2_subset", "naip", "landsat", "sentinel1")


# -- equality with the authors' encoder --------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_reproduces_the_authors_outputs(encoder: ClayEncoder, reference: dict[str, torch.Tensor], info: dict[str, Any], name: str) -> None:
    assert [case["name"] for case in info["cases"]] == list(CASES)
    case = case_tensors(reference, name)
    got = run(encoder, case)
    assert got["encoded"].shape == case["encoded"].shape
    assert sorted(k for k in case if k.startswith("block.")) == [f"block.{i}" for i in range(encoder.depth)]
    assert largest_difference(got, case) <= TOLERANCE
    assert torch.allclose(encoder(case["pixels"], case["waves"], case["gsd"], case["time"], case["latlon"]), case["encoded"], rtol=0, atol=TOLERANCE)


def test_the_comparison_catches_wrong_wavelengths_pixel_sizes_and_metadata(encoder: ClayEncoder, reference: dict[str, torch.Tensor]) -> None:
    case = case_tensors(reference, "sentinel2")
    changes = {
        "bands in another order": {"wavelengths_um": case["waves"].flip(0)},
        "nanometres for micrometres": {"wavelengths_um": case["waves"] * 1000},
        "another pixel size": {"gsd_m": torch.tensor(20.0)},
        "time unknown": {"time": torch.zeros(2, 4)},
        "place unknown": {"location": torch.zeros(2, 4)},
    }
    for what, change in changes.items():
        assert largest_difference(run(encoder, case, **change), case) > 100 * TOLERANCE, what


def test_metadata_codes_are_the_authors(reference: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    for case in info["cases"]:
        tensors = case_tensors(reference, case["name"])
        for sample, (date, place) in enumerate(zip(case["dates"], case["places"])):
            when = datetime.fromisoformat(date) if date else None
            lat, lon = place if place else (None, None)
            assert torch.allclose(torch.tensor(encode_time(when)), tensors["time"][sample], atol=1e-7)
            assert torch.allclose(torch.tensor(encode_location(lat, lon)), tensors["latlon"][sample], atol=1e-7)


@pytest.mark.slow
def test_reproduces_the_authors_outputs_at_clay_v1_5_size(reference: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Clay v1.5's real dimensions (311M weights, rebuilt from the seed the reference was made with)."""
    large = info["large"]
    assert (large["dim"], large["depth"], large["heads"], large["dim_head"], large["mlp_ratio"], large["patch_size"]) == (
        CLAY_V1_5.dim,
        CLAY_V1_5.depth,
        CLAY_V1_5.heads,
        CLAY_V1_5.dim_head,
        CLAY_V1_5.mlp_ratio,
        CLAY_V1_5.patch_size,
    )
    shapes = {key: tuple(shape) for key, shape in info["large_keys"]}
    with torch.device("meta"):
        model = ClayEncoder(CLAY_V1_5)
    model = model.to_empty(device="cpu").eval()
    load_authors_state(model, reference_tool().seeded_state(shapes, large["seed"]), "seeded weights")
    case = case_tensors(reference, "large")
    assert sorted(k for k in case if k.startswith("block.")) == sorted(f"block.{i}" for i in large["blocks"])
    assert largest_difference(run(model, case), case) <= TOLERANCE


def reference_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clay_reference", ROOT / "tools" / "clay_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


# -- the block loop cegate runs ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ("naip", "sentinel2_subset", "sentinel1"))
def test_backbone_feature_maps_are_the_authors_blocks(encoder: ClayEncoder, reference: dict[str, torch.Tensor], info: dict[str, Any], name: str) -> None:
    case_info = next(c for c in info["cases"] if c["name"] == name)
    case = case_tensors(reference, name)
    date, place = case_info["dates"][0], case_info["places"][0]
    conditions = Conditions(case_info["gsd_m"], encode_time(datetime.fromisoformat(date)), encode_location(*place))
    platform = choose_platform(case_info["bands"], case_info["gsd_m"])
    assert platform.name == case_info["platform"]
    backbone = ClayBackbone(encoder, case_info["bands"], platform, conditions).eval()
    assert backbone.feature_layers == (0, 1, 2, 3)
    with torch.no_grad():
        maps = backbone(case["pixels"])
    grid = case["pixels"].shape[-1] // encoder.config.patch_size
    assert len(maps) == 4
    for layer, feature in zip(backbone.feature_layers, maps):
        expected = case[f"block.{layer}"][:, 1:].transpose(1, 2).reshape(1, encoder.config.dim, grid, grid)
        assert (feature - expected).abs().max().item() <= TOLERANCE


def test_conditions_apply_only_inside(encoder: ClayEncoder) -> None:
    backbone = ClayBackbone(encoder, ("red", "green", "blue", "nir"), platform_named("naip"), Conditions(0.6)).eval()
    images = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = backbone(images)[-1]
        with backbone.with_conditions(Conditions(1.0, encode_time(datetime(2020, 5, 1, 12)), encode_location(40.0, -75.0))) as used:
            inside = backbone(images)[-1]
        after = backbone(images)[-1]
    assert used.gsd_m == 1.0
    assert torch.equal(before, after) and not torch.allclose(before, inside)
    with pytest.raises(InputError, match="positive number of metres"):
        Conditions(0.0)


def test_the_toolbox_attaches_and_starts_as_identity(info: dict[str, Any]) -> None:
    model = ClayEncoder(small_config(info)).eval()
    load_authors_state(model, authors_weights(), str(WEIGHTS))
    backbone = ClayBackbone(model, ("B2", "B3", "B4", "B8"), choose_platform(("B2", "B3", "B4", "B8"), 10.0), Conditions(10.0)).eval()
    images = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = backbone(images)
    toolbox = attach_toolbox(backbone)
    assert isinstance(model.blocks[0].attn.qkv, LoRAQKV)
    assert {key[0] for key in toolbox.keys()} == {"lora", "adapter", "earth"}
    with torch.no_grad():
        after = backbone(images)
    for old, new in zip(before, after):
        assert (old - new).abs().max().item() <= 1e-6


# -- the authors' weights, strictly --------------------------------------------------------------------
def test_fixture_weights_are_the_authors_key_names(encoder: ClayEncoder) -> None:
    stored = authors_weights()
    assert set(stored) == set(authors_state_dict(encoder))
    assert all(own_key(authors_key(name)) == name for name in encoder.state_dict())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("transformer.layers.1.0.to_qkv.weight"), r"missing \(1\): transformer\.layers\.1\.0\.to_qkv\.weight"),
        (lambda s: s.__setitem__("transformer.layers.9.0.to_qkv.weight", torch.zeros(96, 32)), r"unexpected \(1\): transformer\.layers\.9"),
        (lambda s: s.__setitem__("decoder.mask_patch", torch.zeros(32)), r"unexpected \(1\): decoder\.mask_patch"),
        (lambda s: s.__setitem__("cls_token", torch.zeros(1, 1, 64)), r"wrong shape \(1\): cls_token \(1, 1, 64\) vs \(1, 1, 32\)"),
    ],
)
def test_loading_is_strict(info: dict[str, Any], change: Any, message: str) -> None:
    state = authors_weights()
    change(state)
    with pytest.raises(InputError, match=message):
        load_authors_state(ClayEncoder(small_config(info)), state, "weights.safetensors")


def test_lightning_checkpoint_layout_loads(tmp_path: Path, info: dict[str, Any], encoder: ClayEncoder) -> None:
    """The authors' .ckpt: `state_dict` with the encoder under `model.encoder.`, beside the decoder,
    the teacher and the projection (dropped), and Lightning's own entries."""
    weights = authors_weights()
    checkpoint = {
        "epoch": 3,
        "global_step": 1000,
        "pytorch-lightning_version": "2.4.0",
        "hyper_parameters": {"model_size": "large", "patch_size": 8},
        "state_dict": {
            **{"model.encoder." + key: value for key, value in weights.items()},
            "model.decoder.mask_patch": torch.zeros(16),
            "model.teacher.cls_token": torch.zeros(1, 1, 8),
            "model.proj.weight": torch.zeros(8, 32),
        },
    }
    path = tmp_path / "clay.ckpt"
    torch.save(checkpoint, path)
    state = encoder_state(read_weights(path), str(path))
    assert set(state) == set(weights)
    model = ClayEncoder(small_config(info))
    load_authors_state(model, state, str(path))
    for name, value in encoder.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert set(encoder_state(weights, "bare")) == set(weights)  # the encoder's keys alone also do
    with pytest.raises(InputError, match="holds no Clay encoder weights.*model.decoder.mask_patch"):
        encoder_state({"state_dict": {"model.decoder.mask_patch": torch.zeros(16)}}, "decoder.ckpt")


def clay_v1_5_keys_from_the_authors_code() -> dict[str, tuple[int, ...]]:
    """Clay v1.5's encoder keys and shapes, as the authors' code builds them at the model card's size
    (docs/release-notes/specification.md: dim 1024, depth 24, heads 16, dim_head 64, MLP ratio 4,
    patch size 8): claymodel/model.py `Encoder` (cls_token, patch_embedding, transformer),
    factory.py `DynamicEmbedding` (wave_dim 128, 128 latent tokens, `fclayer` FCBlock l1/l2,
    `weight_generator` with torch's TransformerEncoderLayer at its default feed-forward 2048,
    fc_weight, fc_bias, weight_tokens, bias_token), backbone.py `Transformer` (layers.N.0 =
    Attention norm/to_qkv/to_out without bias, layers.N.1.net = LayerNorm, Linear, GELU, Linear;
    a final norm). Their checkpoint holds these under `model.encoder.`."""
    dim, depth, inner, hidden, patch, wave, feedforward = 1024, 24, 16 * 64, 4 * 1024, 8, 128, 2048
    layer = "patch_embedding.weight_generator.encoder.layers.0."
    keys: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, dim),
        "patch_embedding.weight_generator.weight_tokens": (128, wave),
        "patch_embedding.weight_generator.bias_token": (1, wave),
        layer + "self_attn.in_proj_weight": (3 * wave, wave),
        layer + "self_attn.in_proj_bias": (3 * wave,),
        layer + "self_attn.out_proj.weight": (wave, wave),
        layer + "self_attn.out_proj.bias": (wave,),
        layer + "linear1.weight": (feedforward, wave),
        layer + "linear1.bias": (feedforward,),
        layer + "linear2.weight": (wave, feedforward),
        layer + "linear2.bias": (wave,),
        layer + "norm1.weight": (wave,),
        layer + "norm1.bias": (wave,),
        layer + "norm2.weight": (wave,),
        layer + "norm2.bias": (wave,),
        "patch_embedding.weight_generator.fc_weight.weight": (patch * patch * dim, wave),
        "patch_embedding.weight_generator.fc_weight.bias": (patch * patch * dim,),
        "patch_embedding.weight_generator.fc_bias.weight": (dim, wave),
        "patch_embedding.weight_generator.fc_bias.bias": (dim,),
        "patch_embedding.fclayer.l1.weight": (wave, wave),
        "patch_embedding.fclayer.l1.bias": (wave,),
        "patch_embedding.fclayer.l2.weight": (wave, wave),
        "patch_embedding.fclayer.l2.bias": (wave,),
        "transformer.norm.weight": (dim,),
        "transformer.norm.bias": (dim,),
    }
    for i in range(depth):
        block = f"transformer.layers.{i}."
        keys.update(
            {
                block + "0.norm.weight": (dim,),
                block + "0.norm.bias": (dim,),
                block + "0.to_qkv.weight": (3 * inner, dim),
                block + "0.to_out.weight": (dim, inner),
                block + "1.net.0.weight": (dim,),
                block + "1.net.0.bias": (dim,),
                block + "1.net.1.weight": (hidden, dim),
                block + "1.net.1.bias": (hidden,),
                block + "1.net.3.weight": (dim, hidden),
                block + "1.net.3.bias": (dim,),
            }
        )
    return keys


def test_the_clay_v1_5_checkpoint_keys_and_shapes_are_accepted(info: dict[str, Any]) -> None:
    expected = clay_v1_5_keys_from_the_authors_code()
    assert len(expected) == 265
    assert expected_authors_shapes(CLAY_V1_5) == expected
    assert {key: tuple(shape) for key, shape in info["large_keys"]} == expected  # recorded from the authors' code
    checkpoint = {
        "state_dict": {
            **{"model.encoder." + key: torch.empty(shape, device="meta") for key, shape in expected.items()},
            "model.decoder.mask_patch": torch.empty(512, device="meta"),
            "model.teacher.cls_token": torch.empty(1, 1, 1024, device="meta"),
            "model.proj.weight": torch.empty(1024, 1024, device="meta"),
        }
    }
    state = encoder_state(checkpoint, "clay-v1.5.ckpt")
    assert config_from_state(state) == CLAY_V1_5
    with torch.device("meta"):
        model = ClayEncoder(CLAY_V1_5)
    load_authors_state(model, state, "clay-v1.5.ckpt")
    assert sum(t.numel() for t in model.state_dict().values()) == sum(math.prod(s) for s in expected.values())


def test_every_authors_size_reads_back_from_its_shapes() -> None:
    for name, config in AUTHORS_SIZES.items():
        shapes = expected_authors_shapes(config)
        assert config_from_state({key: torch.empty(shape, device="meta") for key, shape in shapes.items()}) == config, name
    assert expected_authors_shapes(CLAY_V1_BASE)["transformer.layers.11.1.net.1.weight"] == (3072, 768)


# -- bands ---------------------------------------------------------------------------------------------
def test_band_table_is_the_authors_metadata(info: dict[str, Any]) -> None:
    authors = info["platforms"]
    assert sorted(platform.name for platform in PLATFORMS) == sorted(authors)
    for platform in PLATFORMS:
        assert platform.gsd_m == authors[platform.name]["gsd"]
        rows = [[band.authors_name, band.wavelength_um, band.mean, band.std] for band in platform.bands]
        assert rows == authors[platform.name]["bands"], platform.name


@pytest.mark.parametrize(
    ("bands", "gsd", "platform", "wavelengths"),
    [
        (
            ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
            10.0,
            "sentinel-2-l2a",
            (0.493, 0.56, 0.665, 0.704, 0.74, 0.783, 0.842, 0.865, 1.61, 2.19),
        ),
        (("red", "green", "blue", "nir"), 0.6, "naip", (0.65, 0.56, 0.48, 0.842)),
        (("R", "G", "B"), 0.3, "linz", (0.635, 0.555, 0.465)),
        (("SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"), 30.0, "landsat-c2l2-sr", (0.48, 0.56, 0.65, 0.86, 1.6, 2.2)),
        (("blue", "green", "red", "nir08"), 30.0, "landsat-c2l2-sr", (0.48, 0.56, 0.65, 0.86)),
        (("blue", "green", "red", "nir08"), 10.0, "sentinel-2-l2a", (0.493, 0.56, 0.665, 0.865)),
        (("VV", "VH"), 10.0, "sentinel-1-rtc", (3.5, 4.0)),
        (("sur_refl_b01", "sur_refl_b02"), 250.0, "modis", (0.645, 0.858)),
    ],
)
def test_bands_map_by_name_to_a_platform_and_its_wavelengths(bands: tuple[str, ...], gsd: float, platform: str, wavelengths: tuple[float, ...]) -> None:
    chosen = choose_platform(bands, gsd)
    assert chosen.name == platform
    assert tuple(band.wavelength_um for band in band_table(bands, chosen)) == wavelengths


def test_unknown_bands_are_one_clear_error() -> None:
    with pytest.raises(InputError, match=r"bands B1, B2: no platform Clay was pretrained on has all of them"):
        choose_platform(("B1", "B2"), 10.0)
    with pytest.raises(InputError, match=r"band\(s\) nir are not among Clay's linz bands \(red, green, blue\)"):
        band_table(("red", "nir"), platform_named("linz"))
    with pytest.raises(InputError, match="Clay platform 'planet'"):
        platform_named("planet")
