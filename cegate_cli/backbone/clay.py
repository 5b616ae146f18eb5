"""Clay v1's encoder (Clay Foundation, Apache-2.0), written for cegate, loading the authors' weights.

Clay takes any stack of bands: each band is described only by its centre wavelength, and the
patch embedding's kernel is *generated* from those wavelengths. This module reproduces what the
authors' `Encoder` (github.com/Clay-foundation/model, claymodel/model.py) computes without
masking, checked against their code in tests/test_clay.py:

- wavelength-conditioned patch embedding: each wavelength (micrometres) gets a 1-D sin-cos code
  of width 128, refined by a residual two-layer GELU block; a one-layer post-norm transformer
  (4 heads, feed-forward 2048) runs over 128 learnt kernel tokens, the band codes and one bias
  token; each band's output (plus its code) becomes that band's (dim, p, p) kernel slice, the
  bias token's output the bias; the image is convolved with 0.02 x that kernel, stride p;
- encodings added to every patch token: a 2-D sin-cos code of the patch position over dim - 8
  channels whose frequencies are multiplied by the ground sample distance in metres, then the
  sample's time (4 numbers) and location (4 numbers), `encode_time` and `encode_location`;
- a class token (no encoding) in front, then pre-norm blocks: LayerNorm -> attention (fused qkv
  and output projection, both without bias) and LayerNorm -> MLP (GELU), both residual; a final
  LayerNorm.

Names: the embedding keeps the authors' parameter names; the blocks use cegate's layout
(`blocks.N.attn.qkv`, `blocks.N.mlp.fc1`, ...) so the toolbox finds them, and `authors_key` /
`own_key` translate. `load_authors_state` takes the authors' encoder keys strictly;
`encoder_state` picks them out of their Lightning checkpoint (`model.encoder.*`, the decoder,
teacher and projection dropped). The authors' encoder assumes a square patch grid; here any
rows x cols grid gets the same formula.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cegate_cli.backbone.weights_io import describe_key_problems
from cegate_cli.errors import InputError

CHECKPOINT_PREFIX = "model.encoder."
"""Where the encoder sits in the authors' Lightning checkpoint (`state_dict`); the rest of it
(`model.decoder.*`, `model.teacher.*`, `model.proj.*`) only serves pretraining."""

METADATA_CHANNELS = 8
"""Time (4) and location (4) take the last channels of the encoding; positions the others."""

KERNEL_SCALE = 0.02
"""The generated kernel and bias are used as 0.02 x kernel + bias, as the authors do."""


@dataclass(frozen=True)
class ClayConfig:
    """The encoder's architecture. The wavelength network's sizes are fixed in the authors' code."""

    dim: int = 1024
    depth: int = 24
    heads: int = 16
    dim_head: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 8
    wave_dim: int = 128
    kernel_tokens: int = 128
    wave_heads: int = 4
    wave_feedforward: int = 2048

    def __post_init__(self) -> None:
        if self.dim <= METADATA_CHANNELS + 4 or (self.dim - METADATA_CHANNELS) % 4:
            raise InputError(f"Clay dim {self.dim}: must exceed 12 and leave a multiple of 4 after the 8 metadata channels")
        if self.wave_dim % 2 or self.wave_dim < 4:
            raise InputError(f"Clay wave_dim {self.wave_dim}: must be an even number of at least 4")
        if min(self.depth, self.heads, self.dim_head, self.patch_size) < 1:
            raise InputError("Clay depth, heads, dim_head and patch_size must be positive")

    @property
    def mlp_hidden(self) -> int:
        return int(self.dim * self.mlp_ratio)

    def describe(self) -> str:
        return f"dim {self.dim}, depth {self.depth}, heads {self.heads} x {self.dim_head}, patch {self.patch_size}"


CLAY_V1_5 = ClayConfig()
"""Clay v1.5 (`clay_mae_large`), the weights published as made-with-clay/Clay v1.5/clay-v1.5.ckpt."""

CLAY_V1_BASE = ClayConfig(dim=768, depth=12, heads=12)
"""Clay v1.0 (`clay_mae_base`, clay-v1-base.ckpt), same code and key names at base width."""

AUTHORS_SIZES: dict[str, ClayConfig] = {
    "tiny": ClayConfig(dim=192, depth=6, heads=4, dim_head=48, mlp_ratio=2.0),
    "small": ClayConfig(dim=384, depth=6, heads=6, dim_head=64, mlp_ratio=2.0),
    "base": CLAY_V1_BASE,
    "large": CLAY_V1_5,
}
"""The encoder sizes of the authors' `clay_mae_tiny/small/base/large`, all at patch size 8."""


# -- the metadata the authors feed next to the pixels -------------------------------------------------
def encode_time(when: datetime | None) -> tuple[float, float, float, float]:
    """(sin, cos) of the ISO week over a 52-week year, then (sin, cos) of the hour over 24 hours;
    zeros when the acquisition time is unknown (the authors zero it for a fifth of their chips)."""
    if when is None:
        return (0.0, 0.0, 0.0, 0.0)
    week = when.isocalendar()[1] * 2 * math.pi / 52
    hour = when.hour * 2 * math.pi / 24
    return (math.sin(week), math.cos(week), math.sin(hour), math.cos(hour))


def encode_location(lat: float | None, lon: float | None) -> tuple[float, float, float, float]:
    """(sin, cos) of the latitude, then of the longitude, in radians; zeros when unknown."""
    if lat is None or lon is None:
        return (0.0, 0.0, 0.0, 0.0)
    lat_r, lon_r = lat * math.pi / 180, lon * math.pi / 180
    return (math.sin(lat_r), math.cos(lat_r), math.sin(lon_r), math.cos(lon_r))


def wavelength_code(wavelengths_um: torch.Tensor, width: int) -> torch.Tensor:
    """(C,) wavelengths in micrometres -> (C, width): sin then cos of w * 10000^(-k / (width/2 - 1))."""
    half = width // 2
    steps = torch.arange(half, device=wavelengths_um.device) / (half - 1)
    frequencies = 1.0 / (10000**steps)
    angles = wavelengths_um[:, None] * frequencies[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()


def position_code(rows: int, cols: int, width: int, gsd_m: torch.Tensor) -> torch.Tensor:
    """(rows * cols, width) sin-cos code of patch positions, row-major: sin x, cos x, sin y, cos y.

    The authors' frequencies, kept exactly: 10000^(-2 k / ((n - 1) width)) for k < n = width / 4,
    each multiplied by the ground sample distance in metres."""
    y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    quarter = width // 4
    steps = torch.arange(quarter) / (quarter - 1)
    frequencies = 1.0 / (10000 ** (2 * steps / width)) * (gsd_m.to(x.device) / 1.0)
    y = y.flatten()[:, None] * frequencies[None, :]
    x = x.flatten()[:, None] * frequencies[None, :]
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1).float()


# -- the wavelength-conditioned patch embedding (authors' parameter names) ---------------------------
class ResidualGelu(nn.Module):
    """x + GELU(l2(GELU(l1(x)))): refines the wavelength codes."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.l1 = nn.Linear(width, width)
        self.l2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(self.l2(F.gelu(self.l1(x))))


class PostNormLayer(nn.Module):
    """A post-norm transformer layer (GELU, no dropout) with torch's TransformerEncoderLayer names."""

    def __init__(self, width: int, heads: int, feedforward: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=0.0, batch_first=True)
        self.linear1 = nn.Linear(width, feedforward)
        self.linear2 = nn.Linear(feedforward, width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended = self.self_attn(x, x, x, attn_mask=None, key_padding_mask=None, need_weights=False, is_causal=False)[0]
        x = self.norm1(x + attended)
        return self.norm2(x + self.linear2(F.gelu(self.linear1(x))))


class LayerStack(nn.Module):
    """Holds the layers as `layers.N`, the names the authors' checkpoint uses."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class KernelGenerator(nn.Module):
    """Band codes -> (C, p*p*dim) kernel rows and a (dim,) bias, through learnt kernel tokens."""

    def __init__(self, config: ClayConfig) -> None:
        super().__init__()
        width = config.wave_dim
        self.kernel_tokens = config.kernel_tokens
        self.encoder = LayerStack([PostNormLayer(width, config.wave_heads, config.wave_feedforward)])
        self.fc_weight = nn.Linear(width, config.patch_size**2 * config.dim)
        self.fc_bias = nn.Linear(width, config.dim)
        self.weight_tokens = nn.Parameter(torch.zeros(config.kernel_tokens, width))
        self.bias_token = nn.Parameter(torch.zeros(1, width))

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sequence = torch.cat([self.weight_tokens, codes, self.bias_token], dim=0)
        out = self.encoder(sequence)
        bands = slice(self.kernel_tokens, -1)
        return self.fc_weight(out[bands] + sequence[bands]), self.fc_bias(out[-1])


class WavelengthPatchEmbed(nn.Module):
    """(B, C, H, W) images and (C,) wavelengths in micrometres -> (B, H/p * W/p, dim) patch tokens."""

    def __init__(self, config: ClayConfig) -> None:
        super().__init__()
        self.config = config
        self.weight_generator = KernelGenerator(config)
        self.fclayer = ResidualGelu(config.wave_dim)

    def kernel(self, wavelengths_um: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (dim, C, p, p) convolution kernel, already scaled, and the (dim,) bias."""
        codes = self.fclayer(wavelength_code(wavelengths_um, self.config.wave_dim))
        rows, bias = self.weight_generator(codes)
        p = self.config.patch_size
        kernel = rows.reshape(rows.shape[0], self.config.dim, p, p).transpose(0, 1)
        return kernel * KERNEL_SCALE, bias

    def forward(self, images: torch.Tensor, wavelengths_um: torch.Tensor) -> torch.Tensor:
        if wavelengths_um.shape != (images.shape[1],):
            raise InputError(f"{images.shape[1]} bands but {tuple(wavelengths_um.shape)} wavelengths; give one per band")
        kernel, bias = self.kernel(wavelengths_um.to(images.device))
        patches = F.conv2d(images, kernel, bias=bias, stride=self.config.patch_size)
        return patches.flatten(2).transpose(1, 2)


# -- the transformer (cegate's block layout) ---------------------------------------------------------
class Attention(nn.Module):
    """Multi-head self-attention from one fused, bias-free qkv projection."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.proj = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, self.heads * self.dim_head))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block; calls its submodules by attribute so wrappers (LoRA, adapters) apply."""

    def __init__(self, config: ClayConfig) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(config.dim), Attention(config.dim, config.heads, config.dim_head)
        self.norm2, self.mlp = nn.LayerNorm(config.dim), Mlp(config.dim, config.mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x)) + x
        return self.mlp(self.norm2(x)) + x


@dataclass(frozen=True)
class Conditions:
    """What Clay is told beside the pixels: pixel size in metres, and per sample (or one for all)
    the 4-number time and location codes of `encode_time` and `encode_location`."""

    gsd_m: float
    time: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    location: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.gsd_m) and self.gsd_m > 0):
            raise InputError(f"ground sample distance {self.gsd_m} m: must be a positive number of metres")
        if len(self.time) != 4 or len(self.location) != 4:
            raise InputError("Clay's time and location codes have 4 numbers each (encode_time, encode_location)")


class ClayEncoder(nn.Module):
    """`embed`, then `blocks`, then `norm`: `forward` gives the authors' encoder output (B, 1 + L, D)."""

    def __init__(self, config: ClayConfig = CLAY_V1_5) -> None:
        super().__init__()
        self.config = config
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.patch_embedding = WavelengthPatchEmbed(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def embed(
        self,
        images: torch.Tensor,
        wavelengths_um: torch.Tensor,
        gsd_m: float | torch.Tensor,
        time: torch.Tensor,
        location: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C, H, W) normalised bands -> ((B, 1 + L, D) tokens, class token first; the patch grid).

        `time` and `location` are (B, 4) or (4,) codes; `gsd_m` one pixel size for the batch."""
        batch, _, height, width = images.shape
        p = self.config.patch_size
        if height % p or width % p:
            raise InputError(f"input size {height}x{width} is not a multiple of Clay's patch size {p}")
        patches = self.patch_embedding(images, wavelengths_um)
        grid = (height // p, width // p)
        gsd = gsd_m if isinstance(gsd_m, torch.Tensor) else torch.tensor(float(gsd_m), dtype=torch.float32)
        positions = position_code(*grid, self.config.dim - METADATA_CHANNELS, gsd).to(patches.device)
        metadata = torch.cat((time.reshape(-1, 4).expand(batch, 4), location.reshape(-1, 4).expand(batch, 4)), dim=1)
        encoding = torch.cat(
            (positions.expand(batch, *positions.shape), metadata.to(patches.device)[:, None, :].expand(batch, patches.shape[1], -1)),
            dim=-1,
        )
        tokens = patches + encoding.to(patches.dtype)
        return torch.cat((self.cls_token.to(tokens.dtype).expand(batch, 1, -1), tokens), dim=1), grid

    def forward(
        self,
        images: torch.Tensor,
        wavelengths_um: torch.Tensor,
        gsd_m: float | torch.Tensor,
        time: torch.Tensor,
        location: torch.Tensor,
    ) -> torch.Tensor:
        tokens, _ = self.embed(images, wavelengths_um, gsd_m, time, location)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


# -- the authors' key names ----------------------------------------------------------------------------
_BLOCK_KEYS: tuple[tuple[str, str], ...] = (
    ("norm1", "0.norm"),
    ("attn.qkv", "0.to_qkv"),
    ("attn.proj", "0.to_out"),
    ("norm2", "1.net.0"),
    ("mlp.fc1", "1.net.1"),
    ("mlp.fc2", "1.net.3"),
)
_OWN_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$")
_AUTHORS_BLOCK = re.compile(r"^transformer\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def authors_key(own: str) -> str:
    """cegate's parameter name -> the authors' (`blocks.3.attn.qkv.weight` -> `transformer.layers.3.0.to_qkv.weight`)."""
    if own.startswith("norm."):
        return "transformer." + own
    match = _OWN_BLOCK.match(own)
    if match:
        for mine, theirs in _BLOCK_KEYS:
            if match[2] == mine:
                return f"transformer.layers.{match[1]}.{theirs}.{match[3]}"
    return own


def own_key(authors: str) -> str | None:
    """The authors' parameter name -> cegate's; None for a transformer name cegate has no place for."""
    if authors.startswith("transformer.norm."):
        return authors[len("transformer.") :]
    match = _AUTHORS_BLOCK.match(authors)
    if match:
        for mine, theirs in _BLOCK_KEYS:
            if match[2] == theirs:
                return f"blocks.{match[1]}.{mine}.{match[3]}"
        return None
    return None if authors.startswith("transformer.") else authors


def authors_state_dict(encoder: ClayEncoder) -> dict[str, torch.Tensor]:
    """The encoder's weights under the authors' names (what `Encoder.state_dict()` holds)."""
    return {authors_key(name): tensor for name, tensor in encoder.state_dict().items()}


def expected_authors_shapes(config: ClayConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the authors' encoder for `config` with its shape, built on the meta device."""
    with torch.device("meta"):
        encoder = ClayEncoder(config)
    return {authors_key(name): tuple(tensor.shape) for name, tensor in encoder.state_dict().items()}


def load_authors_state(encoder: ClayEncoder, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load the authors' encoder weights (no prefix) strictly: a key missing, left over or of
    another shape is an InputError naming them in the authors' terms."""
    expected = {authors_key(name): tensor.shape for name, tensor in encoder.state_dict().items()}
    groups = {
        "wrong shape": [
            f"{key} {tuple(value.shape)} vs {tuple(expected[key])}"
            for key, value in state.items()
            if key in expected and tuple(value.shape) != tuple(expected[key])
        ],
        "missing": [key for key in expected if key not in state],
        "unexpected": [key for key in state if key not in expected],
    }
    if any(groups.values()):
        raise InputError(f"weights '{source}' do not fit the Clay encoder ({encoder.config.describe()}): {describe_key_problems(groups)}")
    own = {own_key(key): value for key, value in state.items()}
    encoder.load_state_dict(own, strict=True)  # type: ignore[arg-type]


def encoder_state(checkpoint: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """The encoder's tensors from the authors' Lightning checkpoint (`state_dict` -> `model.encoder.*`,
    prefix removed) or from a file that holds the encoder's keys alone."""
    nested = checkpoint.get("state_dict")
    state = nested if isinstance(nested, Mapping) else checkpoint
    encoder = {key[len(CHECKPOINT_PREFIX) :]: value for key, value in state.items() if key.startswith(CHECKPOINT_PREFIX)}
    if not encoder and "cls_token" in state and any(key.startswith("patch_embedding.") for key in state):
        encoder = dict(state)
    if not encoder:
        sample = ", ".join(list(state)[:4]) or "nothing"
        raise InputError(
            f"'{source}' holds no Clay encoder weights: expected keys under '{CHECKPOINT_PREFIX}' (the authors' "
            f"checkpoint) or the encoder's own keys (cls_token, patch_embedding.*); found {sample}"
        )
    not_tensors = [key for key, value in encoder.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise InputError(f"'{source}': encoder entries that are not tensors: {', '.join(not_tensors[:4])}")
    return encoder


def config_from_state(state: Mapping[str, torch.Tensor], patch_size: int | None = None) -> ClayConfig:
    """The architecture the authors' encoder weights were made for, read from their shapes.

    The number of heads is not in the shapes: it comes from the authors' size whose width, depth
    and MLP ratio match; weights of another size are an InputError."""
    try:
        dim = int(state["cls_token"].shape[-1])
        depth = len({key.split(".")[2] for key in state if key.startswith("transformer.layers.")})
        inner = int(state["transformer.layers.0.0.to_qkv.weight"].shape[0]) // 3
        hidden = int(state["transformer.layers.0.1.net.1.weight"].shape[0])
        kernel_rows = int(state["patch_embedding.weight_generator.fc_weight.weight"].shape[0])
    except KeyError as exc:
        raise InputError(f"not the authors' Clay encoder weights: no {exc.args[0]!r}") from None
    p = patch_size or math.isqrt(kernel_rows // dim)
    for size in AUTHORS_SIZES.values():
        if (size.dim, size.depth, size.heads * size.dim_head, size.mlp_hidden) == (dim, depth, inner, hidden):
            return ClayConfig(dim, depth, size.heads, size.dim_head, size.mlp_ratio, p)
    raise InputError(
        f"Clay weights of width {dim}, depth {depth}, attention width {inner} and MLP width {hidden} match none of the "
        f"authors' sizes ({', '.join(AUTHORS_SIZES)}); their number of heads cannot be read from the weights"
    )
