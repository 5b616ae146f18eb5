"""Galileo's encoder (Tseng et al., ICML 2025), written for cegate, loading the authors' weights.

Galileo embeds a stack of Sentinel-1/Sentinel-2 bands as one token per patch, timestep and
*channel group* (S2 RGB, red edge, ...), adds fixed and learnt encodings, and runs a plain
pre-norm transformer over all tokens together. This module reproduces what the authors' encoder
computes for the 13 space-time bands (checked against their outputs in tests/test_galileo.py):

- patch embedding: one Conv2d kernel per group, stored at `max_patch_size` and resized "flexi"
  to any smaller patch by the pseudo-inverse of an antialiased bicubic resize;
- encodings, each a quarter of the embedding, concatenated in this order: learnt channel-group
  embedding, 1-D sin-cos of the timestep index, sin-cos of the month, and a 2-D sin-cos of the
  patch position scaled by the ground distance a patch covers relative to 10 m
  (`gsd_m * patch_size / 10`), so a 1 m image is not mistaken for a 10 m one;
- blocks: LayerNorm -> attention (separate q, k, v, proj) and LayerNorm -> MLP (GELU), both
  residual, no layer scale; a final LayerNorm.

A group is given or left out as a whole: absent groups get no tokens (the authors remove them
before attention). The space-only, time-only and static modalities (SRTM, ERA5, location, ...)
are not fed by cegate; their weights are kept as buffers so checkpoints load strictly and
round-trip, without appearing as trainable parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cegate_cli.backbone.embedded import GALILEO_NANO_CONFIG, GALILEO_NANO_WEIGHTS
from cegate_cli.backbone.weights_io import load_state_strict, read_weights
from cegate_cli.errors import DocumentError, InputError
from cegate_cli.infra.documents import read_json

SPACE_TIME_BANDS: tuple[str, ...] = ("VV", "VH", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12", "NDVI")
GROUPS: dict[str, tuple[int, ...]] = {
    "S1": (0, 1),
    "S2_RGB": (2, 3, 4),
    "S2_Red_Edge": (5, 6, 7),
    "S2_NIR_10m": (8,),
    "S2_NIR_20m": (9,),
    "S2_SWIR": (10, 11),
    "NDVI": (12,),
}
BASE_GSD_M = 10.0  # the resolution at which a position step is one patch of one pixel

# Modalities the checkpoints carry but cegate never feeds: group -> input channels.
_SPACE_GROUPS = {"SRTM": 2, "DW": 9, "WC": 5}
_TIME_GROUPS = {"ERA5": 2, "TC": 3, "VIIRS": 1}
_STATIC_GROUPS = {"LS": 1, "location": 3, "DW_static": 9, "WC_static": 5}


@dataclass(frozen=True)
class GalileoConfig:
    """The encoder's architecture; `from_authors_config` reads the authors' config.json."""

    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 8
    mlp_ratio: float = 4.0
    max_patch_size: int = 8
    max_sequence_length: int = 24

    def __post_init__(self) -> None:
        # four encodings of embed_dim/4 each; the spatial one splits again into rows and columns,
        # each a sin half and a cos half
        if self.embed_dim % 16 or self.embed_dim % self.num_heads:
            raise InputError(f"Galileo needs embed_dim divisible by 16 and by num_heads, got {self.embed_dim}")

    @classmethod
    def from_authors_config(cls, config: dict[str, Any], source: str = "config") -> GalileoConfig:
        """Read `model.encoder`; training-only keys (drop_path, freeze_projections) are ignored."""
        try:
            enc = config["model"]["encoder"]
            return cls(
                embed_dim=int(enc["embedding_size"]),
                depth=int(enc["depth"]),
                num_heads=int(enc["num_heads"]),
                mlp_ratio=float(enc["mlp_ratio"]),
                max_patch_size=int(enc["max_patch_size"]),
                max_sequence_length=int(enc["max_sequence_length"]),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"Galileo config '{source}' lacks model.encoder.{exc.args[0] if exc.args else ''}") from None
        except ValueError as exc:
            raise InputError(f"Galileo config '{source}' has a malformed value: {exc}") from None


@dataclass(frozen=True)
class PretrainedNormalization:
    """How the pretraining data were scaled: (x - (mean - k*std)) / (2*k*std), k = `std_multiplier`.

    The authors map mean +- 2 std to [0, 1] for every band except NDVI, which is fed as computed,
    (B8 - B4) / (B8 + B4), in [-1, 1].
    """

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    std_multiplier: float = 2.0
    unscaled_bands: tuple[str, ...] = ("NDVI",)

    @classmethod
    def from_json(cls, path: Path | str) -> PretrainedNormalization:
        """From cegate's galileo-*.json (key "normalization") or the authors' normalization.json (key "13")."""
        data = _read_json(Path(path))
        try:
            if "normalization" in data:
                norm = data["normalization"]
                return cls(
                    tuple(norm["bands"]),
                    tuple(map(float, norm["mean"])),
                    tuple(map(float, norm["std"])),
                    float(norm["std_multiplier"]),
                    tuple(norm["unscaled_bands"]),
                )
            stats = data[str(len(SPACE_TIME_BANDS))]
            return cls(SPACE_TIME_BANDS, tuple(map(float, stats["mean"])), tuple(map(float, stats["std"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"'{path}' holds no Galileo normalisation statistics ({exc!r})") from None

    def shift_and_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-band (shift, divisor), float64, for `(x - shift) / divisor`."""
        mean, std = torch.tensor(self.mean, dtype=torch.float64), torch.tensor(self.std, dtype=torch.float64)
        shift, div = mean - self.std_multiplier * std, 2 * self.std_multiplier * std
        for name in self.unscaled_bands:
            index = self.bands.index(name)
            shift[index], div[index] = 0.0, 1.0
        return shift, div

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise `x` whose last axis holds `bands` in order."""
        shift, div = self.shift_and_scale()
        return (x - shift.to(x)) / div.to(x)


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(M, dim): [sin(p * w_k), cos(p * w_k)], w_k = 10000^(-k / (2 dim)), k < dim/2.

    The exponent k/(2 dim) (not MAE's k/(dim/2)) is what the authors compute; the weights were
    trained with it, so it is kept. Float32 throughout, as theirs.
    """
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, device=positions.device) / dim / 2.0)
    angles = positions.reshape(-1, 1).float() * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(rows: int, cols: int, dim: int, step: float, device: torch.device | None = None) -> torch.Tensor:
    """(rows, cols, dim): first half encodes the column, second half the row, both times `step`.

    The authors compute it for square grids only; rows and columns are independent, so a
    rectangle is the corresponding crop of a square.
    """
    scale = torch.tensor(step, dtype=torch.float32, device=device)
    by_col = sincos_1d(torch.arange(cols, device=device) * scale, dim // 2)
    by_row = sincos_1d(torch.arange(rows, device=device) * scale, dim // 2)
    return torch.cat([by_col[None, :, :].expand(rows, -1, -1), by_row[:, None, :].expand(-1, cols, -1)], dim=-1)


@cache
def _resize_pinv(base: int, new: int) -> torch.Tensor:
    """(new*new, base*base): the pseudo-inverse of antialiased bicubic resizing base -> new.

    FlexiViT's rule: the resized kernel w' minimises |B^T w' - w| where B resizes a base patch,
    so a token from a resized patch stays close to the token of the original patch.
    """
    basis = torch.eye(base * base).reshape(base * base, 1, base, base)
    resized = F.interpolate(basis, size=(new, new), mode="bicubic", antialias=True)
    return torch.linalg.pinv(resized.reshape(base * base, new * new))


def resize_kernel(weight: torch.Tensor, patch_size: int) -> torch.Tensor:
    """A (D, C, P, P) patch kernel resized to (D, C, p, p); linear, so gradients reach `weight`."""
    base = weight.shape[-1]
    if patch_size == base:
        return weight
    pinv = _resize_pinv(base, patch_size).to(weight)
    flat = weight.reshape(*weight.shape[:2], base * base) @ pinv.T
    return flat.reshape(*weight.shape[:2], patch_size, patch_size)


class GroupPatchEmbed(nn.Module):
    """One channel group's patch embedding, a Conv2d kernel usable at any patch size <= its own."""

    def __init__(self, in_chans: int, embed_dim: int, max_patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=max_patch_size, stride=max_patch_size)

    def forward(self, x: torch.Tensor, patch_size: int) -> torch.Tensor:
        """(N, C, H, W) -> (N, H/p, W/p, D)."""
        kernel = resize_kernel(self.proj.weight, patch_size)
        return F.conv2d(x, kernel, self.proj.bias, stride=patch_size).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Multi-head self-attention with separate q, k, v projections (the authors' layout)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; calls its submodules by attribute so wrappers (LoRA, adapters) apply."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _layer_shapes(groups: dict[str, int], dim: int, prefix: str = "", kernel: tuple[int, ...] = ()) -> dict[str, tuple[int, ...]]:
    """Weight and bias shapes of one Linear (or Conv2d with `kernel`) per group, at "<group>.<prefix>weight"."""
    shapes: dict[str, tuple[int, ...]] = {}
    for group, channels in groups.items():
        shapes[f"{group}.{prefix}weight"], shapes[f"{group}.{prefix}bias"] = (dim, channels, *kernel), (dim,)
    return shapes


def _buffer_tree(shapes: dict[str, tuple[int, ...]]) -> nn.Module:
    """Nested modules holding zero buffers at dotted names ("SRTM.proj.weight"), for unused weights."""
    root = nn.Module()
    for dotted, shape in shapes.items():
        *path, leaf = dotted.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        node.register_buffer(leaf, torch.zeros(shape))
    return root


class GalileoEncoder(nn.Module):
    """Galileo's encoder for the space-time bands; `embed`, then `blocks`, then `norm`.

    Callers that run the blocks themselves do: `x = embed(...).flatten(1, 4)`, then
    `for block in blocks: x = block(x)`, then `norm(x)`; `forward` does exactly that.
    """

    def __init__(self, config: GalileoConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_dim, self.depth = config.embed_dim, config.depth
        d, q, p = config.embed_dim, config.embed_dim // 4, config.max_patch_size
        self.space_time_embed = nn.ModuleDict({g: GroupPatchEmbed(len(ix), d, p) for g, ix in GROUPS.items()})
        self.s_t_channel_embed = nn.Parameter(torch.zeros(len(GROUPS), q))
        # fixed sin-cos tables, saved in the checkpoints: timestep index and month
        self.register_buffer("pos_embed", torch.zeros(config.max_sequence_length, q))
        self.month_embed = _buffer_tree({"weight": (12, q)})
        self.blocks = nn.ModuleList(Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)
        # unused modalities, kept for strict loading
        for name, count in (("sp", len(_SPACE_GROUPS)), ("t", len(_TIME_GROUPS)), ("st", len(_STATIC_GROUPS))):
            self.register_buffer(f"{name}_channel_embed", torch.zeros(count, q))
        self.space_embed = _buffer_tree(_layer_shapes(_SPACE_GROUPS, d, "proj.", (p, p)))
        self.time_embed = _buffer_tree(_layer_shapes(_TIME_GROUPS, d))
        self.static_embed = _buffer_tree(_layer_shapes(_STATIC_GROUPS, d))

    def embed(self, s_t_x: torch.Tensor, groups: Sequence[str], months: torch.Tensor, patch_size: int, gsd_m: float) -> torch.Tensor:
        """(B, H, W, T, 13) normalised bands -> (B, H/p, W/p, T, len(groups), D) tokens, in `groups`' order.

        Only the named groups are embedded (the rest of `s_t_x` is never read); every sample
        shares them. `months` (B, T) holds 0-11; `gsd_m` is the pixel size in metres.
        """
        b, h, w, t = self._check(s_t_x, groups, months, patch_size, gsd_m)
        tokens = []
        for name in groups:
            pixels = s_t_x[..., list(GROUPS[name])].permute(0, 3, 4, 1, 2).flatten(0, 1)  # (B*T, C, H, W)
            patches = self.space_time_embed[name](pixels, patch_size)  # (B*T, h, w, D)
            tokens.append(patches.reshape(b, t, *patches.shape[1:]).permute(0, 2, 3, 1, 4))
        x = torch.stack(tokens, dim=4)  # (B, h, w, T, G, D)
        return x + self._encodings(x.shape[1], x.shape[2], groups, months, gsd_m * patch_size / BASE_GSD_M)

    def _encodings(self, rows: int, cols: int, groups: Sequence[str], months: torch.Tensor, step: float) -> torch.Tensor:
        """(B, rows, cols, T, G, D): [channel group | timestep | month | 2-D position] quarters."""
        (b, t), g, q = months.shape, len(groups), self.embed_dim // 4
        index = torch.tensor([list(GROUPS).index(n) for n in groups], device=months.device)
        parts = [
            self.s_t_channel_embed[index][None, None, None, None],
            self.pos_embed[:t][None, None, None, :, None],
            self.month_embed.weight[months][:, None, None, :, None],
            sincos_2d(rows, cols, q, step, months.device)[None, :, :, None, None],
        ]
        shape = (b, rows, cols, t, g, q)
        return torch.cat([part.to(self.norm.weight.dtype).expand(shape) for part in parts], dim=-1)

    def _check(self, s_t_x: torch.Tensor, groups: Sequence[str], months: torch.Tensor, patch_size: int, gsd_m: float) -> tuple[int, int, int, int]:
        if s_t_x.ndim != 5 or s_t_x.shape[-1] != len(SPACE_TIME_BANDS):
            raise InputError(f"Galileo takes (B, H, W, T, {len(SPACE_TIME_BANDS)}) inputs, got {tuple(s_t_x.shape)}")
        b, h, w, t, _ = s_t_x.shape
        unknown = [n for n in groups if n not in GROUPS]
        if unknown or not groups or len(set(groups)) != len(groups):
            raise InputError(f"Galileo groups {list(groups)} must be distinct names among {', '.join(GROUPS)}")
        if not 1 <= patch_size <= self.config.max_patch_size or h % patch_size or w % patch_size:
            raise InputError(f"patch size {patch_size} must be 1..{self.config.max_patch_size} and divide the {h}x{w} input")
        if t > self.config.max_sequence_length:
            raise InputError(f"Galileo takes at most {self.config.max_sequence_length} timesteps, got {t}")
        if tuple(months.shape) != (b, t) or months.dtype != torch.long or bool((months < 0).any() | (months > 11).any()):
            raise InputError(f"months must be a (B, T) = ({b}, {t}) long tensor of 0-11, got {tuple(months.shape)} {months.dtype}")
        if not gsd_m > 0:
            raise InputError(f"ground sample distance must be positive, got {gsd_m} m")
        return b, h, w, t

    def run_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D) through every block, before the final norm."""
        for block in self.blocks:
            tokens = block(tokens)
        return tokens

    def forward(self, s_t_x: torch.Tensor, s_t_m: torch.Tensor, months: torch.Tensor, patch_size: int, gsd_m: float) -> torch.Tensor:
        """The authors' format: mask (B, H, W, T, 7), 1 = absent -> (B, h, w, T, 7, D), absent groups zero."""
        present = present_groups(s_t_m)
        x = self.embed(s_t_x, present, months, patch_size, gsd_m)
        grid = x.shape[:5]
        x = self.norm(self.run_blocks(x.flatten(1, 4))).reshape(*grid, -1)
        out = x.new_zeros(*grid[:4], len(GROUPS), self.embed_dim)
        out[..., [list(GROUPS).index(n) for n in present], :] = x
        return out


def present_groups(s_t_m: torch.Tensor) -> list[str]:
    """Names of the groups whose mask is 0 everywhere; a group partly masked is refused."""
    if s_t_m.ndim != 5 or s_t_m.shape[-1] != len(GROUPS):
        raise InputError(f"Galileo masks are (B, H, W, T, {len(GROUPS)}), got {tuple(s_t_m.shape)}")
    absent = (s_t_m >= 1).flatten(0, 3)
    partial = absent.any(0) & ~absent.all(0)
    if bool(partial.any()):
        names = [n for n, bad in zip(GROUPS, partial.tolist()) if bad]
        raise InputError(f"groups {names} are masked in part; cegate gives or leaves out each group as a whole")
    return [n for n, gone in zip(GROUPS, absent.all(0).tolist()) if not gone]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except DocumentError as exc:
        raise InputError(f"Galileo config {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"'{path}' holds a {type(data).__name__}, not a JSON object")
    return data


def galileo_state_dict(weights_path: Path | str) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (safetensors, or a tensors-only pickle), ".backbone" removed from names as the authors do."""
    state = read_weights(Path(weights_path))
    return {key.replace(".backbone", ""): value for key, value in state.items()}


def load_galileo(weights_path: Path | str = GALILEO_NANO_WEIGHTS, config_path: Path | str = GALILEO_NANO_CONFIG) -> GalileoEncoder:
    """A GalileoEncoder with every tensor of `weights_path`; any key mismatch is an InputError naming the file."""
    config = GalileoConfig.from_authors_config(_read_json(Path(config_path)), str(config_path))
    encoder = GalileoEncoder(config)
    load_state_strict(encoder, galileo_state_dict(weights_path), weights_path, "galileo")
    return encoder.eval()
