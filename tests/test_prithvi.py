"""Prithvi-EO-2.0 checkpoints convert to timm ViTs that compute exactly what Prithvi's encoder computes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hub_repos import (
    PRITHVI_DEPTH,
    PRITHVI_DIM,
    PRITHVI_HEADS,
    PRITHVI_IMG,
    PRITHVI_PATCH,
    tiny_prithvi_checkpoint,
    tiny_prithvi_config,
    torch_save_bytes,
)
from timm.models.vision_transformer import Block
from torch import nn

from cegate_cli.backbone import load_pretrained
from cegate_cli.backbone.hub import resolve_backbone
from cegate_cli.backbone.prithvi import (
    HLS_BANDS,
    PrithviConfig,
    convert_prithvi_state_dict,
    prithvi_vit,
    sincos_pos_embed_frame0,
)
from cegate_cli.errors import InputError


def prithvi_encoder_reference(state: dict[str, torch.Tensor], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prithvi's single-frame encoder forward written out from the original tensors, with no coordinates:
    (patch tokens after the Conv3d, final normalised tokens)."""
    enc = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    video = images.unsqueeze(2)  # (B, C, T=1, H, W)
    patches = F.conv3d(video, enc["patch_embed.proj.weight"], enc["patch_embed.proj.bias"], stride=(1, PRITHVI_PATCH, PRITHVI_PATCH))
    tokens = patches.flatten(2).transpose(1, 2)  # (B, T*h*w, D), t slowest, then rows, then columns
    per_frame = tokens.shape[1]
    pos = enc["pos_embed"]
    x = tokens + pos[:, 1 : 1 + per_frame]
    cls = (enc["cls_token"] + pos[:, :1]).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    for index in range(PRITHVI_DEPTH):
        block = Block(PRITHVI_DIM, PRITHVI_HEADS, 4.0, qkv_bias=True, norm_layer=nn.LayerNorm)
        prefix = f"blocks.{index}."
        block.load_state_dict({k[len(prefix) :]: v for k, v in enc.items() if k.startswith(prefix)})
        x = block.eval()(x)
    x = F.layer_norm(x, (PRITHVI_DIM,), enc["norm.weight"], enc["norm.bias"], eps=1e-5)
    return tokens, x


def test_converted_vit_matches_prithvi_encoder_exactly() -> None:
    checkpoint = tiny_prithvi_checkpoint(seed=11)
    pretrained = prithvi_vit(tiny_prithvi_config(), checkpoint, "config.json", "Prithvi.pt")
    vit = pretrained.vit.eval()
    images = torch.randn(2, 6, PRITHVI_IMG, PRITHVI_IMG)
    with torch.no_grad():
        expected_tokens, expected = prithvi_encoder_reference(checkpoint, images)
        patch_tokens = vit.patch_embed(images).flatten(1, 2)  # dynamic-size ViTs keep (B, h, w, D)
        assert torch.allclose(patch_tokens, expected_tokens, atol=1e-6, rtol=0)
        assert torch.allclose(vit.forward_features(images), expected, atol=1e-6, rtol=0)

    # the checkpoint's own (random here) frame-0 position embedding was kept, not recomputed
    grid = (PRITHVI_IMG // PRITHVI_PATCH) ** 2
    assert torch.equal(vit.pos_embed, checkpoint["encoder.pos_embed"][:, : 1 + grid])
    assert pretrained.band_names == HLS_BANDS
    assert pretrained.architecture == "prithvi_eo_v2_300_tl"
    assert vit.pretrained_cfg["mean"][3] == 2734.0
    assert vit.norm.eps == 1e-5


def test_converted_vit_takes_other_sizes() -> None:
    vit = prithvi_vit(tiny_prithvi_config(), tiny_prithvi_checkpoint(), "c", "w").vit.eval()
    with torch.no_grad():
        assert vit.forward_features(torch.randn(1, 6, 48, 64)).shape == (1, 1 + 6 * 8, PRITHVI_DIM)


def test_decoder_and_metadata_encoders_are_dropped_and_flat_v1_layout_works() -> None:
    checkpoint = tiny_prithvi_checkpoint(seed=2)
    config = PrithviConfig.from_config(tiny_prithvi_config(), "config.json")
    converted = convert_prithvi_state_dict(checkpoint, config, "w.pt")
    assert not any("decoder" in k or "mask_token" in k or "embed_enc" in k for k in converted)
    assert converted["patch_embed.proj.weight"].shape == (PRITHVI_DIM, 6, PRITHVI_PATCH, PRITHVI_PATCH)

    # Prithvi-EO-1.0 style: no "encoder." prefix, decoder keys at the top level, wrapped in {"model": ...}
    flat = {k.removeprefix("encoder.").removeprefix("decoder."): v for k, v in checkpoint.items()}
    flat_converted = convert_prithvi_state_dict({"model": flat}, config, "w.pt")
    assert flat_converted.keys() == converted.keys()
    assert all(torch.equal(flat_converted[k], converted[k]) for k in converted)


def test_sincos_fallback_equals_frame_zero_of_the_3d_embedding() -> None:
    """Reference written from the Prithvi paper/code description: D split 6/16 columns, 6/16 rows,
    4/16 time; each axis [sin(p w), cos(p w)], w_k = 1/10000^(k/(d/2)); rows/cols/time tiled."""
    dim, frames, grid = 64, 3, 4

    def axis(d: int, positions: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=float) / (d / 2.0))
        out = np.outer(positions, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    w = np.tile(axis(dim // 16 * 6, np.arange(grid)), (frames * grid, 1))
    h = np.tile(np.repeat(axis(dim // 16 * 6, np.arange(grid)), grid, axis=0), (frames, 1))
    t = np.repeat(axis(dim // 16 * 4, np.arange(frames)), grid * grid, axis=0)
    full = np.concatenate([np.zeros((1, dim)), np.concatenate([w, h, t], axis=1)], axis=0)
    frame0 = torch.from_numpy(full[: 1 + grid * grid]).float().unsqueeze(0)
    assert torch.allclose(sincos_pos_embed_frame0(dim, grid, grid), frame0, atol=1e-6)

    # a checkpoint without the buffer gets exactly that
    checkpoint = tiny_prithvi_checkpoint()
    del checkpoint["encoder.pos_embed"]
    config = PrithviConfig.from_config(tiny_prithvi_config(), "config.json")
    converted = convert_prithvi_state_dict(checkpoint, config, "w.pt")
    assert torch.equal(converted["pos_embed"], sincos_pos_embed_frame0(PRITHVI_DIM, 4, 4))


def test_unrecognised_checkpoint_lists_its_keys() -> None:
    config = PrithviConfig.from_config(tiny_prithvi_config(), "config.json")
    with pytest.raises(InputError) as info:
        convert_prithvi_state_dict({"backbone.conv1.weight": torch.zeros(1), "fc.bias": torch.zeros(1)}, config, "odd.pt")
    message = str(info.value)
    assert "odd.pt" in message and "patch_embed.proj.weight" in message and "backbone.conv1.weight" in message


def test_tubelet_larger_than_one_is_refused() -> None:
    config_json = tiny_prithvi_config(patch_size=[2, PRITHVI_PATCH, PRITHVI_PATCH])
    with pytest.raises(InputError, match="tubelet"):
        prithvi_vit(config_json, tiny_prithvi_checkpoint(tubelet=2), "config.json", "w.pt")
    config = PrithviConfig.from_config(tiny_prithvi_config(), "config.json")
    with pytest.raises(InputError, match="tubelet"):
        convert_prithvi_state_dict(tiny_prithvi_checkpoint(tubelet=2), config, "w.pt")


def test_config_that_disagrees_with_weights_is_an_error() -> None:
    with pytest.raises(InputError, match="wrong shape|embeds"):
        prithvi_vit(tiny_prithvi_config(embed_dim=48, num_heads=3), tiny_prithvi_checkpoint(), "config.json", "w.pt")


def test_band_names_from_config_codes_and_names() -> None:
    assert PrithviConfig.from_config(tiny_prithvi_config(), "c").band_names() == HLS_BANDS
    names = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]
    assert PrithviConfig.from_config(tiny_prithvi_config(bands=names), "c").band_names() == HLS_BANDS
    assert PrithviConfig.from_config(tiny_prithvi_config(bands=[]), "c").band_names() == HLS_BANDS
    assert PrithviConfig.from_config(tiny_prithvi_config(bands=["B02", "X"] + names[2:]), "c").band_names() is None


def test_local_prithvi_folder_resolves_and_loads(tmp_path: Path) -> None:
    folder = tmp_path / "prithvi"
    folder.mkdir()
    checkpoint = tiny_prithvi_checkpoint(seed=5)
    (folder / "config.json").write_text(json.dumps(tiny_prithvi_config()))
    (folder / "Prithvi_EO_V2_300M_TL.pt").write_bytes(torch_save_bytes(checkpoint))
    source = resolve_backbone(str(folder))
    assert source.kind == "prithvi" and source.weights_path == folder / "Prithvi_EO_V2_300M_TL.pt"
    vit = load_pretrained(source).vit.eval()
    images = torch.randn(1, 6, PRITHVI_IMG, PRITHVI_IMG)
    with torch.no_grad():
        assert torch.allclose(vit.forward_features(images), prithvi_encoder_reference(checkpoint, images)[1], atol=1e-5)
    assert math.isclose(float(vit.norm.eps), 1e-5)
