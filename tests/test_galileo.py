"""cegate's Galileo encoder, built from the shipped weights, computes what the authors' encoder computes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from cegate_cli.backbone.galileo import (
    GALILEO_NANO_CONFIG,
    GALILEO_NANO_WEIGHTS,
    GROUPS,
    SPACE_TIME_BANDS,
    GalileoConfig,
    GalileoEncoder,
    PretrainedNormalization,
    load_galileo,
    present_groups,
    resize_kernel,
    sincos_1d,
)
from cegate_cli.errors import InputError

AUTHORS = Path(__file__).resolve().parents[1].parent / "shared" / "backbones" / "galileo-nano"
REFERENCE = AUTHORS / "reference_outputs.safetensors"
needs_authors_files = pytest.mark.skipif(
    not REFERENCE.is_file(), reason=f"the authors' Galileo files are not at {AUTHORS} (only outside the project's workspace)"
)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def encoder() -> GalileoEncoder:
    return load_galileo()  # the shipped safetensors + json


def reference_cases() -> dict[str, dict]:
    with safe_open(str(REFERENCE), "pt") as handle:
        return json.loads(handle.metadata()["cases"])


def run_case(encoder: GalileoEncoder, name: str, **overrides) -> float:
    """Max abs difference from the authors' output over the case's present groups."""
    case, ref = reference_cases()[name], load_file(str(REFERENCE))
    args = dict(patch_size=case["patch_size"], gsd_m=float(case["input_resolution_m"]), months=ref[f"{name}.months"])
    args.update(overrides)
    with torch.no_grad():
        out = encoder(ref[f"{name}.s_t_x"], ref[f"{name}.s_t_m"], **args)
    expected = ref[f"{name}.out_s_t_x"]
    assert out.shape == expected.shape
    index = [list(GROUPS).index(g) for g in case["present_groups"]]
    return (out[..., index, :] - expected[..., index, :]).abs().max().item()


CASES = ("all_s2_p4_r10", "rgbn_ndvi_p8_r10", "rgb_p4_r1", "s1_s2_p2_r20")


@needs_authors_files
@pytest.mark.parametrize("name", CASES)
def test_reproduces_the_authors_outputs(encoder: GalileoEncoder, name: str) -> None:
    assert sorted(reference_cases()) == sorted(CASES)
    ref = load_file(str(REFERENCE))
    assert present_groups(ref[f"{name}.s_t_m"]) == reference_cases()[name]["present_groups"]
    assert run_case(encoder, name) <= TOLERANCE


@needs_authors_files
def test_the_comparison_catches_wrong_positions_groups_and_months(encoder: GalileoEncoder) -> None:
    # the resolution scaling: the 1 m and 20 m cases read as 10 m are far off
    assert run_case(encoder, "rgb_p4_r1", gsd_m=10.0) > 100 * TOLERANCE
    assert run_case(encoder, "s1_s2_p2_r20", gsd_m=10.0) > 100 * TOLERANCE
    months = load_file(str(REFERENCE))["all_s2_p4_r10.months"]
    assert run_case(encoder, "all_s2_p4_r10", months=(months + 1) % 12) > 100 * TOLERANCE
    # the channel-group embeddings in another order
    saved = encoder.s_t_channel_embed.detach().clone()
    try:
        with torch.no_grad():
            encoder.s_t_channel_embed.copy_(saved.roll(1, dims=0))
        assert run_case(encoder, "all_s2_p4_r10") > 100 * TOLERANCE
    finally:
        with torch.no_grad():
            encoder.s_t_channel_embed.copy_(saved)


@needs_authors_files
def test_shipped_weights_are_the_authors_tensors() -> None:
    authors = torch.load(AUTHORS / "encoder.pt", map_location="cpu", weights_only=True)
    authors = {key.replace(".backbone", ""): value for key, value in authors.items()}
    shipped = load_file(str(GALILEO_NANO_WEIGHTS))
    assert sorted(shipped) == sorted(authors)
    for key, value in authors.items():
        assert shipped[key].dtype == value.dtype and torch.equal(shipped[key], value), key


@needs_authors_files
def test_converter_is_reproducible_and_made_the_shipped_files(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("convert_galileo", Path(__file__).resolve().parents[1] / "tools" / "convert_galileo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    for out in (tmp_path / "a", tmp_path / "b"):
        assert (
            module.main(
                [
                    "--encoder",
                    str(AUTHORS / "encoder.pt"),
                    "--config",
                    str(AUTHORS / "config.json"),
                    "--normalization",
                    str(AUTHORS / "normalization.json"),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    for suffix in ("safetensors", "json", "LICENSE"):
        first = (tmp_path / "a" / f"galileo-nano.{suffix}").read_bytes()
        assert first == (tmp_path / "b" / f"galileo-nano.{suffix}").read_bytes(), suffix
        assert first == (GALILEO_NANO_WEIGHTS.parent / f"galileo-nano.{suffix}").read_bytes(), suffix
    record = json.loads(GALILEO_NANO_CONFIG.read_text())
    assert record["source"]["encoder"]["sha256"] == hashlib.sha256((AUTHORS / "encoder.pt").read_bytes()).hexdigest()


def test_shipped_record_matches_the_shipped_files() -> None:
    record = json.loads(GALILEO_NANO_CONFIG.read_text())
    data = GALILEO_NANO_WEIGHTS.read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["bytes"] == len(data)
    assert record["source"]["commit"] == "0f0b5b95ac81acef4b74cf4686dc877202f4541b"
    assert "MIT License" in (GALILEO_NANO_WEIGHTS.parent / record["license"]["file"]).read_text()
    assert GalileoConfig.from_authors_config(record) == GalileoConfig(128, 4, 8, 4.0, 8, 24)
    assert sum(t.numel() for t in load_file(str(GALILEO_NANO_WEIGHTS)).values()) == record["parameters"] == 1_037_856


def test_fixed_tables_follow_the_authors_formulas(encoder: GalileoEncoder) -> None:
    # the saved timestep table is sincos_1d, the same function the 2-D spatial encoding uses
    assert torch.allclose(encoder.pos_embed, sincos_1d(torch.arange(24), 32), atol=1e-6)
    angle = 2 * math.pi * torch.arange(12.0) / 12
    months = torch.cat([torch.sin(angle)[:, None].expand(12, 16), torch.cos(angle)[:, None].expand(12, 16)], dim=1)
    assert torch.allclose(encoder.month_embed.weight, months, atol=1e-6)


def test_blocks_expose_plain_linears_and_run_separately(encoder: GalileoEncoder) -> None:
    block = encoder.blocks[0]
    for name in ("q", "k", "v", "proj"):
        assert type(getattr(block.attn, name)) is nn.Linear
    assert isinstance(block.mlp, nn.Module) and len(encoder.blocks) == encoder.depth == 4
    x = torch.randn(1, 8, 8, 1, len(SPACE_TIME_BANDS))
    mask = torch.ones(1, 8, 8, 1, len(GROUPS))
    mask[..., [1, 3]] = 0
    months = torch.tensor([[4]])
    with torch.no_grad():
        tokens = encoder.embed(x, ["S2_RGB", "S2_NIR_10m"], months, 4, 10.0).flatten(1, 4)
        for blk in encoder.blocks:
            tokens = blk(tokens)
        mine = encoder.norm(tokens).reshape(1, 2, 2, 1, 2, -1)
        full = encoder(x, mask, months, 4, 10.0)
    assert torch.equal(full[..., [1, 3], :], mine)
    assert not full[..., [0, 2, 4, 5, 6], :].any()  # absent groups: zeros
    trainable = {name for name, _ in encoder.named_parameters()}
    assert not any(name.startswith(("space_embed", "time_embed", "static_embed", "pos_embed")) for name in trainable)


def test_absent_groups_get_no_tokens_and_are_never_read(encoder: GalileoEncoder) -> None:
    x = torch.randn(2, 16, 16, 2, len(SPACE_TIME_BANDS))
    months = torch.tensor([[0, 1], [5, 6]])
    with torch.no_grad():
        subset = encoder.embed(x, ["NDVI", "S2_RGB"], months, 8, 10.0)
        everything = encoder.embed(x, list(GROUPS), months, 8, 10.0)
        assert subset.shape == (2, 2, 2, 2, 2, 128)
        # embedding is per group: a subset is exactly those groups' tokens, in the order asked
        assert torch.equal(subset, everything[..., [6, 1], :])
        scrambled = x.clone()
        scrambled[..., [0, 1, 5, 6, 7]] = 1e6  # S1 and red edge, not asked for
        assert torch.equal(encoder.embed(scrambled, ["NDVI", "S2_RGB"], months, 8, 10.0), subset)


def test_rectangles_are_crops_of_squares(encoder: GalileoEncoder) -> None:
    # the authors only accept square grids; rows and columns are encoded independently
    x = torch.randn(1, 24, 24, 1, len(SPACE_TIME_BANDS))
    months = torch.tensor([[2]])
    with torch.no_grad():
        square = encoder.embed(x, ["S2_RGB"], months, 4, 20.0)
        wide = encoder.embed(x[:, :8], ["S2_RGB"], months, 4, 20.0)
    assert torch.equal(wide, square[:, :2])


def test_kernel_resize_keeps_full_size_and_is_linear() -> None:
    weight = torch.randn(4, 3, 8, 8)
    assert resize_kernel(weight, 8) is weight
    small = resize_kernel(weight, 3)
    assert small.shape == (4, 3, 3, 3)
    assert torch.allclose(resize_kernel(2 * weight + 1, 3), 2 * small + resize_kernel(torch.ones_like(weight), 3), atol=1e-5)


def test_wrong_key_set_is_an_error_naming_the_file(tmp_path: Path) -> None:
    state = load_file(str(GALILEO_NANO_WEIGHTS))
    state["blocks.0.attn.qkv.weight"] = state.pop("blocks.0.attn.q.weight")
    bad = tmp_path / "renamed.safetensors"
    save_file(state, str(bad))
    with pytest.raises(InputError, match=r"renamed\.safetensors.*blocks\.0\.attn\.q\.weight"):
        load_galileo(bad, GALILEO_NANO_CONFIG)


def test_pickles_load_tensors_only_and_lose_backbone_in_names(tmp_path: Path) -> None:
    state = load_file(str(GALILEO_NANO_WEIGHTS))
    state["norm.backbone.weight"] = state.pop("norm.weight")
    path = tmp_path / "encoder.pt"
    torch.save(state, path)
    assert torch.equal(load_galileo(path, GALILEO_NANO_CONFIG).norm.weight, load_file(str(GALILEO_NANO_WEIGHTS))["norm.weight"])


def test_inputs_are_checked(encoder: GalileoEncoder) -> None:
    x, months = torch.zeros(1, 8, 8, 1, len(SPACE_TIME_BANDS)), torch.tensor([[0]])
    for groups, patch, month, gsd in (
        (["S2_RGB"], 3, months, 10.0),  # 3 does not divide 8
        (["S2_RGB"], 16, months, 10.0),  # larger than the stored kernel
        (["RGB"], 4, months, 10.0),
        (["S2_RGB"], 4, torch.tensor([[12]]), 10.0),
        (["S2_RGB"], 4, months, 0.0),
    ):
        with pytest.raises(InputError):
            encoder.embed(x, groups, month, patch, gsd)
    partial = torch.ones(1, 8, 8, 1, len(GROUPS))
    partial[0, :4, :, 0, 1] = 0
    with pytest.raises(InputError, match="S2_RGB"):
        present_groups(partial)


def test_normalization_is_the_authors_two_std_scaling() -> None:
    shipped = PretrainedNormalization.from_json(GALILEO_NANO_CONFIG)
    assert shipped.bands == SPACE_TIME_BANDS and shipped.std_multiplier == 2.0
    mean, std = torch.tensor(shipped.mean, dtype=torch.float64), torch.tensor(shipped.std, dtype=torch.float64)
    raw = torch.stack([mean, mean + 2 * std, mean - 2 * std])
    raw[:, 12] = torch.tensor([0.3, -0.5, 0.9], dtype=torch.float64)  # NDVI stays as computed
    out = shipped.apply(raw)
    expected = torch.tensor([[0.5] * 12, [1.0] * 12, [0.0] * 12], dtype=torch.float64)
    assert torch.allclose(out[:, :12], expected, atol=1e-9)
    assert torch.equal(out[:, 12], raw[:, 12])
    if (AUTHORS / "normalization.json").is_file():
        assert PretrainedNormalization.from_json(AUTHORS / "normalization.json") == shipped
