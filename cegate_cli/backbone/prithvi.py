"""Prithvi-EO-2.0 checkpoints as plain timm VisionTransformers.

Prithvi is a masked autoencoder whose encoder is a ViT with two differences that matter here:
a 3-D patch embedding (a Conv3d whose time extent, the tubelet, is 1 in every released model)
and a fixed 3-D sin-cos position embedding over (frames, rows, columns). For one image (one
frame) both reduce exactly to a timm ViT: the Conv3d kernel with its time axis squeezed is the
Conv2d kernel, and the position embedding of frame 0 is the 2-D one. The transformer blocks
are timm `Block`s already, so their weights map 1:1.

The decoder (`decoder.*`, `mask_token`) is dropped: it is only used for pretraining. The TL
variants (config `coords_encoding`: time, location) keep their time and location encoders
(`temporal_embed_enc`, `location_embed_enc`) and become `prithvi_tl.PrithviTLViT`, which adds
them to the patch tokens when a scene's coordinates are given and is the plain ViT otherwise;
`prithvi_tl_backbone.PretrainedPrithviTL` feeds it the run's and each scene's date and centre.

Limits: Prithvi's LayerNorms use torch's eps (1e-5), kept here (timm's default is 1e-6). At input
sizes other than the pretraining size, the models without time and location resample the position
embedding as timm does (antialiased bicubic), Prithvi with align_corners bicubic: close, not
bit-identical; the TL variants resample as Prithvi does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from cegate_cli.backbone.prithvi_tl import COORDINATE_KINDS, PrithviTLViT
from cegate_cli.backbone.prithvi_tl_backbone import PretrainedPrithviTL
from cegate_cli.backbone.vit import PretrainedViT
from cegate_cli.backbone.weights_io import load_state_strict
from cegate_cli.errors import InputError

HLS_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir_narrow", "swir_1", "swir_2")

# Prithvi's config.json lists HLS L30 (Landsat OLI) codes, where B05 is the narrow NIR, not
# Sentinel-2's red edge; terratorch's HLSBands names appear in other configs.
_PRITHVI_BAND_NAMES: dict[str, str] = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "nir_narrow",
    "B06": "swir_1",
    "B07": "swir_2",
    "COASTAL_AEROSOL": "coastal",
    "BLUE": "blue",
    "GREEN": "green",
    "RED": "red",
    "NIR_NARROW": "nir_narrow",
    "NIR_BROAD": "nir",
    "SWIR_1": "swir_1",
    "SWIR_2": "swir_2",
    "RED_EDGE_1": "red_edge_1",
    "RED_EDGE_2": "red_edge_2",
    "RED_EDGE_3": "red_edge_3",
}

# The Prithvi-EO-2.0 defaults (terratorch's prithvi_vit.py), used where a config.json is silent.
PRITHVI_V2_MEAN = (1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0)
PRITHVI_V2_STD = (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0)

_REQUIRED_KEYS = ("patch_embed.proj.weight", "cls_token", "blocks.0.attn.qkv.weight", "norm.weight")
_METADATA_ENCODERS = ("temporal_embed_enc.", "location_embed_enc.")
_WRAPPER_PREFIXES = ("_timm_module.", "module.")


@dataclass(frozen=True)
class PrithviConfig:
    """The architecture a Prithvi config.json describes (its `pretrained_cfg`)."""

    img_size: int
    patch_size: int
    tubelet_size: int
    num_frames: int
    in_chans: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    architecture: str
    coords_encoding: tuple[str, ...] = ()
    """Which of Prithvi's metadata encoders ("time", "location") the TL variants carry."""
    coords_scale_learn: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str) -> PrithviConfig:
        cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else config
        try:
            patch = cfg.get("patch_size", (1, 16, 16))
            patch = (1, int(patch), int(patch)) if isinstance(patch, (int, float)) else tuple(int(p) for p in patch)
            if len(patch) == 2:
                patch = (1, *patch)
            if len(patch) != 3 or patch[1] != patch[2]:
                raise InputError(f"Prithvi config '{source}' has patch_size {cfg.get('patch_size')!r}; expected [t, p, p]")
            img_size = cfg.get("img_size", 224)
            img_size = int(img_size if isinstance(img_size, (int, float)) else img_size[0])
            return cls(
                img_size=img_size,
                patch_size=patch[1],
                tubelet_size=patch[0],
                num_frames=int(cfg.get("num_frames", 1)),
                in_chans=int(cfg.get("in_chans", len(cfg.get("bands") or HLS_BANDS))),
                embed_dim=int(cfg["embed_dim"]),
                depth=int(cfg["depth"]),
                num_heads=int(cfg["num_heads"]),
                mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
                bands=tuple(str(b) for b in (cfg.get("bands") or ())),
                mean=tuple(float(v) for v in (cfg.get("mean") or PRITHVI_V2_MEAN)),
                std=tuple(float(v) for v in (cfg.get("std") or PRITHVI_V2_STD)),
                architecture=str(config.get("architecture") or "prithvi"),
                coords_encoding=_coords_encoding(cfg.get("coords_encoding"), source),
                coords_scale_learn=bool(cfg.get("coords_scale_learn", False)),
            )
        except InputError:
            raise
        except KeyError as exc:
            raise InputError(f"Prithvi config '{source}' lacks {exc.args[0]!r} in its pretrained_cfg") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"Prithvi config '{source}' has a malformed value: {exc}") from None

    def band_names(self) -> tuple[str, ...] | None:
        """Canonical names of the pretrained channels; None when the config's list is not understood."""
        if not self.bands:
            return HLS_BANDS if self.in_chans == len(HLS_BANDS) else None
        names = tuple(_PRITHVI_BAND_NAMES.get(b.strip().upper()) for b in self.bands)
        if None in names or len(names) != self.in_chans:
            return None
        return names  # type: ignore[return-value]


def sincos_pos_embed_frame0(embed_dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Prithvi's fixed 3-D sin-cos embedding for frame 0, with its zero class-token row: (1, 1+h*w, D).

    Prithvi splits D into columns (6/16), rows (6/16) and time (4/16); each part is
    [sin(pos * w_k), cos(pos * w_k)] with w_k = 10000^(-k / (d/2)). Used when a checkpoint does
    not carry the buffer in a shape that fits.
    """
    if embed_dim % 16:
        raise InputError(f"Prithvi's position embedding needs embed_dim divisible by 16, got {embed_dim}")

    def axis(dim: int, positions: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
        angles = positions.to(torch.float64)[:, None] * omega[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    part = embed_dim // 16
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    w_part = axis(6 * part, cols.reshape(-1))
    h_part = axis(6 * part, rows.reshape(-1))
    t_part = axis(4 * part, torch.zeros(grid_h * grid_w))
    grid = torch.cat([w_part, h_part, t_part], dim=1)
    return torch.cat([torch.zeros(1, embed_dim, dtype=torch.float64), grid], dim=0).float().unsqueeze(0)


def encoder_state_dict(checkpoint: dict[str, Any], source: str, coords_encoding: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The encoder's tensors with Prithvi's prefixes removed (MAE `encoder.*` or the flat v1 layout);
    the time and location encoders only where `coords_encoding` names them."""
    state = _unwrap(checkpoint)
    if any(key.startswith("encoder.") for key in state):
        encoder = {key[len("encoder.") :]: value for key, value in state.items() if key.startswith("encoder.")}
    else:
        encoder = {key: value for key, value in state.items() if not _is_decoder_key(key)}
    dropped = tuple(prefix for kind, prefix in zip(COORDINATE_KINDS, _METADATA_ENCODERS) if kind not in coords_encoding)
    encoder = {key: value for key, value in encoder.items() if not key.startswith(dropped)}
    missing = [key for key in _REQUIRED_KEYS if key not in encoder]
    if missing:
        sample = ", ".join(sorted(state)[:8]) or "(no tensors)"
        raise InputError(f"'{source}' is not a Prithvi checkpoint cegate understands: it lacks {', '.join(missing)}; its first keys are {sample}")
    return encoder


def convert_prithvi_state_dict(
    checkpoint: dict[str, Any], config: PrithviConfig, source: str, keep_coordinate_encoders: bool = False
) -> dict[str, torch.Tensor]:
    """A timm VisionTransformer state dict (one frame, 2-D grid) from a Prithvi checkpoint; with
    `keep_coordinate_encoders`, the TL encoders the config names too (for `PrithviTLViT`)."""
    encoder = encoder_state_dict(checkpoint, source, config.coords_encoding if keep_coordinate_encoders else ())
    converted: dict[str, torch.Tensor] = {}
    kernel = encoder.pop("patch_embed.proj.weight")
    if kernel.ndim == 5:
        if kernel.shape[2] != 1:
            raise InputError(f"'{source}' embeds {kernel.shape[2]} frames per patch (tubelet); cegate maps single images and only converts tubelet size 1")
        kernel = kernel[:, :, 0]
    if kernel.ndim != 4:
        raise InputError(f"'{source}' has a patch embedding of shape {tuple(kernel.shape)}; expected (D, C, 1, p, p)")
    converted["patch_embed.proj.weight"] = kernel.contiguous()
    if "patch_embed.proj.bias" in encoder:
        converted["patch_embed.proj.bias"] = encoder.pop("patch_embed.proj.bias")
    converted["cls_token"] = encoder.pop("cls_token").reshape(1, 1, -1)
    converted["pos_embed"] = _frame0_pos_embed(encoder.pop("pos_embed", None), config)
    converted.update(encoder)  # blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm: timm's names
    # {temporal,location}_embed_enc.scale where kept: PrithviTLViT's names
    return converted


def build_prithvi_vit(config: PrithviConfig) -> VisionTransformer:
    """An empty timm ViT with Prithvi's encoder architecture, for one frame (a `PrithviTLViT` for
    the TL variants)."""
    kwargs: dict[str, Any] = dict(
        img_size=config.img_size,
        patch_size=config.patch_size,
        in_chans=config.in_chans,
        num_classes=0,
        global_pool="",
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        qkv_bias=True,
        class_token=True,
        dynamic_img_size=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-5),
        weight_init="skip",
    )
    if config.coords_encoding:
        return PrithviTLViT(config.coords_encoding, config.coords_scale_learn, **kwargs)
    return VisionTransformer(**kwargs)


def prithvi_vit(config_json: dict[str, Any], checkpoint: dict[str, Any], config_path: str, weights_path: str) -> PretrainedViT:
    """A timm ViT carrying a Prithvi checkpoint's encoder, with its bands and normalisation recorded.

    Takes what was read from config.json and the .pt file (reading is `backbone.load`'s job);
    the paths only name the files in messages.
    """
    config = PrithviConfig.from_config(config_json, config_path)
    if config.tubelet_size != 1:
        raise InputError(f"'{config_path}' uses a tubelet of {config.tubelet_size} frames; only 1 is supported")
    state = convert_prithvi_state_dict(checkpoint, config, weights_path, keep_coordinate_encoders=True)
    vit = build_prithvi_vit(config)
    if state["patch_embed.proj.weight"].shape[1] != config.in_chans:
        raise InputError(f"'{weights_path}' embeds {state['patch_embed.proj.weight'].shape[1]} bands but its config says in_chans={config.in_chans}")
    load_state_strict(vit, state, weights_path, f"{config.architecture} (from '{config_path}')")
    vit.pretrained_cfg = {
        "architecture": config.architecture,
        "input_size": (config.in_chans, config.img_size, config.img_size),
        "mean": config.mean,  # HLS surface reflectance scaled by 10000
        "std": config.std,
        "bands": config.bands,
        "coords_encoding": config.coords_encoding,
        "source": "prithvi",
    }
    if isinstance(vit, PrithviTLViT):
        return PretrainedPrithviTL(vit=vit, band_names=config.band_names(), architecture=config.architecture)
    return PretrainedViT(vit=vit, band_names=config.band_names(), architecture=config.architecture)


def _frame0_pos_embed(pos_embed: torch.Tensor | None, config: PrithviConfig) -> torch.Tensor:
    """The checkpoint's own position embedding for frame 0 when its shape fits, else the formula's."""
    grid = config.img_size // config.patch_size
    per_frame = grid * grid
    frames = max(1, config.num_frames // config.tubelet_size)
    if pos_embed is not None and pos_embed.ndim == 3 and pos_embed.shape[-1] == config.embed_dim:
        tokens = pos_embed.shape[1] - 1
        if tokens == frames * per_frame or tokens == per_frame:
            return pos_embed[:, : 1 + per_frame].clone()
    return sincos_pos_embed_frame0(config.embed_dim, grid, grid)


def _coords_encoding(value: Any, source: str) -> tuple[str, ...]:
    """config.json's `coords_encoding` list, checked: a subset of ("time", "location")."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or any(kind not in COORDINATE_KINDS for kind in value):
        raise InputError(f"Prithvi config '{source}' has coords_encoding {value!r}; expected a list of {list(COORDINATE_KINDS)}")
    return tuple(kind for kind in COORDINATE_KINDS if kind in value)


def _unwrap(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a training checkpoint ({'model': ...}), prefixes of wrappers removed."""
    state: Any = checkpoint
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(f"a Prithvi checkpoint must hold a dict of tensors, not {type(state).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        tensors[key] = value
    return tensors


def _is_decoder_key(key: str) -> bool:
    return key.startswith("decoder") or "_dec" in key or key == "mask_token"
