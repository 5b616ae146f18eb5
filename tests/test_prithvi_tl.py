"""Prithvi-EO-2.0 TL encoders (time and location) equal the authors' encoder.

The fixture (tests/fixtures/prithvi_tiny, made by tools/prithvi_reference.py) holds a random-weight
tiny-TL encoder at the real width (192, 3 heads, patch 16, 6 HLS bands, one block), HLS inputs,
coordinates, and what the authors' `PrithviViT.forward_features` returned for them; its
reference.json also lists every tensor of a full tiny-TL MAE checkpoint as the authors' code names it.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cegate_cli.backbone.prithvi import HLS_BANDS, prithvi_vit
from cegate_cli.backbone.prithvi_tl import PrithviTLViT, SceneCoordinates, coordinate_tensors
from cegate_cli.backbone.vit import Backbone
from cegate_cli.backbone.weights_io import read_weights
from cegate_cli.errors import InputError

FIXTURE = Path(__file__).parent / "fixtures" / "prithvi_tiny"
REFERENCE = json.loads((FIXTURE / "reference.json").read_text(encoding="utf-8"))
INPUTS = load_file(str(FIXTURE / "inputs.safetensors"))
OUTPUTS = load_file(str(FIXTURE / "outputs.safetensors"))
HLS_CODES = ["B02", "B03", "B04", "B05", "B06", "B07"]
ATOL = 1e-5


def config_json(pretrained_cfg: dict, **overrides: object) -> dict:
    """A config.json in the layout of the Prithvi-EO-2.0 Hub repos."""
    cfg = dict(pretrained_cfg, bands=HLS_CODES, mean=REFERENCE["mean"], std=REFERENCE["std"], **overrides)
    return {"architecture": REFERENCE["architecture"], "num_features": cfg["embed_dim"], "pretrained_cfg": cfg}


def normalise(raw: torch.Tensor) -> torch.Tensor:
    """The script's normalisation, with the same float32 operations."""
    mean = torch.tensor(REFERENCE["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(REFERENCE["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return (raw.to(torch.float32) - mean) / std


@pytest.fixture(scope="module")
def fixture_vit() -> PrithviTLViT:
    weights = FIXTURE / "weights.safetensors"
    pretrained = prithvi_vit(config_json(REFERENCE["config"]), read_weights(weights), "config.json", str(weights))
    assert isinstance(pretrained.vit, PrithviTLViT)
    assert pretrained.band_names == HLS_BANDS
    return pretrained.vit.eval()


def case_inputs(name: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    case = next(c for c in REFERENCE["cases"] if c["name"] == name)
    size = case["size"]
    temporal = INPUTS[f"{size}.temporal_coords"] if case["temporal"] else None
    location = INPUTS[f"{size}.location_coords"] if case["location"] else None
    return normalise(INPUTS[f"{size}.hls"]), temporal, location


def test_fixture_loads_strictly_with_the_coordinate_scales(fixture_vit: PrithviTLViT) -> None:
    weights = load_file(str(FIXTURE / "weights.safetensors"))
    assert fixture_vit.coords_encoding == ("time", "location")
    assert isinstance(fixture_vit.temporal_embed_enc.scale, torch.nn.Parameter)
    assert torch.equal(fixture_vit.temporal_embed_enc.scale, weights["encoder.temporal_embed_enc.scale"].float())
    assert torch.equal(fixture_vit.location_embed_enc.scale, weights["encoder.location_embed_enc.scale"].float())
    assert fixture_vit.temporal_embed_enc.scale.item() != fixture_vit.location_embed_enc.scale.item()
    assert fixture_vit.pretrained_cfg["coords_encoding"] == ("time", "location")


@pytest.mark.parametrize("name", [case["name"] for case in REFERENCE["cases"]])
def test_encoder_equals_the_authors_outputs(fixture_vit: PrithviTLViT, name: str) -> None:
    images, temporal, location = case_inputs(name)
    with torch.no_grad():
        tokens = fixture_vit.forward_features(images, temporal_coords=temporal, location_coords=location)
    expected = OUTPUTS[f"{name}.final"]
    assert tokens.shape == expected.shape
    assert torch.allclose(tokens, expected, atol=ATOL, rtol=0), (tokens - expected).abs().max()


def test_coordinates_change_the_tokens_and_each_pair_counts(fixture_vit: PrithviTLViT) -> None:
    """Guards the fixture itself: equality above would be empty if the encodings added nothing."""
    finals = {name: OUTPUTS[f"32x48.{name}.final"] for name in ("none", "time", "location", "time_location")}
    for first, second in [("none", "time"), ("none", "location"), ("time", "time_location"), ("location", "time_location")]:
        assert (finals[first] - finals[second]).abs().max() > 1e-2, (first, second)


@pytest.mark.parametrize("label", ["none", "time", "location", "time_location"])
def test_block_loop_with_coordinates_equals_the_authors_block_output(fixture_vit: PrithviTLViT, label: str) -> None:
    """cegate's block loop (Backbone.embed -> `_pos_embed`) gets coordinates from the context."""
    images, temporal, location = case_inputs(f"32x48.{label}")
    backbone = Backbone(fixture_vit, feature_layers=(0,)).eval()
    with torch.no_grad(), fixture_vit.coordinates(temporal, location):
        (feature_map,) = backbone(images)
    expected = OUTPUTS[f"32x48.{label}.last_block"][:, 1:]  # class token dropped
    batch, dim, height, width = feature_map.shape
    assert (height, width) == (2, 3)
    tokens = feature_map.reshape(batch, dim, height * width).transpose(1, 2)
    assert torch.allclose(tokens, expected, atol=ATOL, rtol=0), (tokens - expected).abs().max()
    assert fixture_vit._temporal is None and fixture_vit._location is None  # the context cleans up


def test_a_scene_without_a_pair_gets_what_the_authors_give_without_it(fixture_vit: PrithviTLViT) -> None:
    """Coordinates are per image: a NaN row adds nothing to that image and leaves the others as they are."""
    images, temporal, location = case_inputs("32x48.time_location")
    (year, day), (lat, lon) = temporal[0, 0].tolist(), location[0].tolist()
    scenes = [SceneCoordinates(int(year), int(day), lat, lon), SceneCoordinates()]
    batch_temporal, batch_location = coordinate_tensors(scenes)
    assert batch_temporal is not None and batch_location is not None
    assert torch.equal(batch_temporal[0], temporal[0]) and torch.isnan(batch_temporal[1]).all()
    with torch.no_grad():
        tokens = fixture_vit.forward_features(images, temporal_coords=batch_temporal, location_coords=batch_location)
    assert torch.allclose(tokens[0], OUTPUTS["32x48.time_location.final"][0], atol=ATOL, rtol=0)
    assert torch.allclose(tokens[1], OUTPUTS["32x48.none.final"][1], atol=ATOL, rtol=0)
    assert coordinate_tensors([SceneCoordinates(), SceneCoordinates()]) == (None, None)


@pytest.mark.parametrize("shapes", ["shapes_one_frame", "shapes_four_frames"])
def test_the_real_tiny_tl_checkpoint_layout_loads(shapes: str) -> None:
    """Every key of a tiny-TL MAE checkpoint (decoder included) with its real shape loads strictly."""
    layout = REFERENCE["real_checkpoint"][shapes]
    assert len([k for k in layout if k.startswith("encoder.blocks.") and k.endswith("qkv.weight")]) == 12
    generator = torch.Generator().manual_seed(0)
    checkpoint = {
        key: (torch.zeros(1).expand(shape) if key.startswith("decoder.") else 0.02 * torch.randn(shape, generator=generator)) for key, shape in layout.items()
    }
    config = {k: v for k, v in REFERENCE["real_checkpoint"]["config"].items() if not k.startswith("decoder_")}
    config["num_frames"] = 1 if shapes == "shapes_one_frame" else 4
    vit = prithvi_vit(config_json(config), checkpoint, "config.json", "Prithvi_EO_V2_tiny_TL.pt").vit.eval()
    assert isinstance(vit, PrithviTLViT) and len(vit.blocks) == 12 and vit.embed_dim == 192
    assert torch.equal(vit.pos_embed, checkpoint["encoder.pos_embed"][:, :197])
    temporal, location = coordinate_tensors([SceneCoordinates.from_date(date(2020, 9, 1), 38.9, -77.0)])
    with torch.no_grad():
        tokens = vit.forward_features(torch.randn(1, 6, 224, 224), temporal_coords=temporal, location_coords=location)
    assert tokens.shape == (1, 197, 192) and torch.isfinite(tokens).all()


def test_a_tl_config_without_the_encoders_in_its_checkpoint_is_refused() -> None:
    weights = load_file(str(FIXTURE / "weights.safetensors"))
    del weights["encoder.location_embed_enc.scale"]
    with pytest.raises(InputError, match="location_embed_enc.scale"):
        prithvi_vit(config_json(REFERENCE["config"]), weights, "config.json", "w.safetensors")
    # a config naming only time drops the location encoder, as the authors' loader does
    only_time = prithvi_vit(config_json(REFERENCE["config"], coords_encoding=["time"]), weights, "c", "w").vit
    assert isinstance(only_time, PrithviTLViT) and not hasattr(only_time, "location_embed_enc")


def test_fixed_scales_are_buffers_and_unknown_kinds_are_refused() -> None:
    weights = load_file(str(FIXTURE / "weights.safetensors"))
    vit = prithvi_vit(config_json(REFERENCE["config"], coords_scale_learn=False), weights, "c", "w").vit
    assert "temporal_embed_enc.scale" in dict(vit.named_buffers())
    with pytest.raises(InputError, match="coords_encoding"):
        prithvi_vit(config_json(REFERENCE["config"], coords_encoding=["time", "altitude"]), weights, "c.json", "w")


def test_scene_coordinates_are_checked_and_read_from_a_date() -> None:
    scene = SceneCoordinates.from_date(date(2020, 9, 1), 45.0, -120.0)
    assert (scene.year, scene.day_of_year) == (2020, 245)  # HLS names this day 2020245
    assert SceneCoordinates.from_date(None, 1.0, 2.0).has_time is False
    for bad in (
        dict(year=2020),
        dict(latitude=3.0),
        dict(year=2020, day_of_year=0),
        dict(latitude=91.0, longitude=0.0),
        dict(latitude=0.0, longitude=float("nan")),
    ):
        with pytest.raises(InputError):
            SceneCoordinates(**bad)  # type: ignore[arg-type]
