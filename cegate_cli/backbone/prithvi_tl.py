"""Prithvi-EO-2.0's TL variants: a scene's date and place added to its patch tokens, as the authors do.

The TL models (tiny-TL, 100M-TL, 300M-TL, 600M-TL) were pretrained with two inputs besides the
pixels: when the scene was taken, as (year, day of year), and where, as its centre (latitude,
longitude) in degrees. Each pair is encoded from the raw numbers with 1-D sin-cos embeddings
(the first number fills the first half of the width, the second the rest; frequencies
10000^(-k/(d/2))), multiplied by one scale per pair (a learned parameter when the config sets
`coords_scale_learn`, else a buffer of 1) and added to every patch token after the position
embedding; the class token gets neither. A pair that is not given adds nothing: pretraining
dropped them at random, so the model knows scenes without them, and without coordinates the
encoder is the plain ViT.

`PrithviTLViT` is a timm VisionTransformer with the two encoders under the checkpoint's own names
(`temporal_embed_enc`, `location_embed_enc`), so a released checkpoint loads strictly. The
sin-cos embeddings are computed in float32 with the same operations as the authors' code, since at
year-sized arguments (about 2000 radians) float32 rounding is larger than the 1e-5 the outputs
are checked to. At grid sizes other than the pretraining one the fixed position embedding is
resampled as the authors resample it (bicubic, align_corners=True, no antialiasing), so crops of
any size give what the authors' encoder gives.

Coordinates are given per image as tensors with NaN where a scene lacks the pair (that image gets
nothing added, exactly as if the pair were not passed), either to `forward_features` or, for
callers that run the embedding and blocks themselves (cegate's block loop calls `_pos_embed`),
around the call with `with vit.coordinates(temporal, location): ...`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from cegate_cli.errors import InputError

COORDINATE_KINDS: tuple[str, ...] = ("time", "location")
"""The names Prithvi's config.json uses in `coords_encoding`."""


@dataclass(frozen=True)
class SceneCoordinates:
    """When and where one scene was taken, in the units the TL models were pretrained with.

    `day_of_year` counts from 1 (1 January), as in HLS file names (`...2020245T...`: day 245);
    latitude and longitude are WGS84 degrees of the scene's (or crop's) centre. Either pair may be
    absent; half a pair is an error.
    """

    year: int | None = None
    day_of_year: int | None = None
    latitude: float | None = None
    longitude: float | None = None

    def __post_init__(self) -> None:
        if (self.year is None) != (self.day_of_year is None):
            raise InputError("a scene's date needs both its year and its day of year")
        if (self.latitude is None) != (self.longitude is None):
            raise InputError("a scene's location needs both its latitude and its longitude")
        if self.day_of_year is not None and not 1 <= self.day_of_year <= 366:
            raise InputError(f"day of year {self.day_of_year} is outside 1..366")
        if self.latitude is not None and not (math.isfinite(self.latitude) and -90.0 <= self.latitude <= 90.0):
            raise InputError(f"latitude {self.latitude} is outside -90..90 degrees")
        if self.longitude is not None and not (math.isfinite(self.longitude) and -180.0 <= self.longitude <= 180.0):
            raise InputError(f"longitude {self.longitude} is outside -180..180 degrees")

    @classmethod
    def from_date(cls, when: date | None, latitude: float | None = None, longitude: float | None = None) -> SceneCoordinates:
        """From an acquisition date (its year and day of year) and a centre."""
        if when is None:
            return cls(latitude=latitude, longitude=longitude)
        return cls(when.year, when.timetuple().tm_yday, latitude, longitude)

    @property
    def has_time(self) -> bool:
        return self.year is not None

    @property
    def has_location(self) -> bool:
        return self.latitude is not None


def coordinate_tensors(scenes: Sequence[SceneCoordinates]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A batch's coordinates as the encoder takes them: temporal (B, 1, 2) = (year, day of year),
    location (B, 2) = (lat, lon), NaN rows for scenes without the pair; None when no scene has it."""
    nan = float("nan")
    temporal = None
    if any(scene.has_time for scene in scenes):
        rows = [[[float(s.year), float(s.day_of_year)]] if s.has_time else [[nan, nan]] for s in scenes]  # type: ignore[arg-type]
        temporal = torch.tensor(rows, dtype=torch.float32)
    location = None
    if any(scene.has_location for scene in scenes):
        pairs = [[float(s.latitude), float(s.longitude)] if s.has_location else [nan, nan] for s in scenes]  # type: ignore[arg-type]
        location = torch.tensor(pairs, dtype=torch.float32)
    return temporal, location


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M,) float32 positions -> (M, dim): [sin(p w_k), cos(p w_k)], w_k = 1 / 10000^(k / (dim/2)).

    Written with the operations (and float32 order) of the authors' torch version, so the values
    agree to the last bit and not only to float32 precision."""
    if dim % 2:
        raise ValueError(f"a sin-cos embedding needs an even width, got {dim}")
    omega = torch.arange(dim // 2, dtype=positions.dtype, device=positions.device)
    omega /= dim / 2.0
    omega = 1.0 / 10000**omega
    angles = torch.einsum("m,d->md", positions.reshape(-1), omega)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class PairEncoder(nn.Module):
    """Two numbers per image (year and day of year, or latitude and longitude) -> (B, 1, D),
    scaled by `scale`; images whose pair is NaN get zeros."""

    def __init__(self, embed_dim: int, learn_scale: bool) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.first_dim = embed_dim // 2
        if learn_scale:
            self.scale = nn.Parameter(torch.full((1,), 0.1))
        else:
            self.register_buffer("scale", torch.ones(1))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        pairs = pairs.reshape(pairs.shape[0], 2).to(torch.float32)
        given = ~torch.isnan(pairs).any(dim=1)
        pairs = torch.nan_to_num(pairs)
        first = sincos_1d(self.first_dim, pairs[:, 0])
        second = sincos_1d(self.embed_dim - self.first_dim, pairs[:, 1])
        embedding = self.scale * torch.cat([first, second], dim=-1)
        embedding = torch.where(given[:, None], embedding, torch.zeros_like(embedding))
        return embedding.unsqueeze(1)


def resample_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """(1, 1 + h*w, D) -> (1, 1 + h'*w', D): the class row kept, the grid resampled with bicubic
    align_corners=True interpolation, as Prithvi resamples its position embedding."""
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    cls_row, grid = pos_embed[:, :1], pos_embed[:, 1:]
    grid = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=True)
    return torch.cat([cls_row, grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


class PrithviTLViT(VisionTransformer):
    """A timm ViT (class token, no registers, `dynamic_img_size=True`) that adds Prithvi's time and
    location encodings to its patch tokens when coordinates are set."""

    def __init__(self, coords_encoding: Sequence[str], coords_scale_learn: bool, **vit_kwargs: Any) -> None:
        super().__init__(**vit_kwargs)
        unknown = sorted(set(coords_encoding) - set(COORDINATE_KINDS))
        if unknown:
            raise InputError(f"Prithvi coords_encoding {unknown} is not one of {list(COORDINATE_KINDS)}")
        if self.cls_token is None or self.reg_token is not None or self.no_embed_class:
            raise ValueError("PrithviTLViT is built with one class token whose position is embedded")
        self.coords_encoding = tuple(kind for kind in COORDINATE_KINDS if kind in coords_encoding)
        if "time" in self.coords_encoding:
            self.temporal_embed_enc = PairEncoder(self.embed_dim, coords_scale_learn)
        if "location" in self.coords_encoding:
            self.location_embed_enc = PairEncoder(self.embed_dim, coords_scale_learn)
        self._temporal: torch.Tensor | None = None
        self._location: torch.Tensor | None = None

    @contextlib.contextmanager
    def coordinates(self, temporal: torch.Tensor | None, location: torch.Tensor | None) -> Iterator[None]:
        """Within the block, every embedding adds these: temporal (B or 1, 1, 2) / (B, 2) year and
        day of year, location (B or 1, 2) lat and lon; a kind the model was not trained with is ignored."""
        previous = (self._temporal, self._location)
        self._temporal, self._location = temporal, location
        try:
            yield
        finally:
            self._temporal, self._location = previous

    def forward_features(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        *,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if temporal_coords is None and location_coords is None:
            return super().forward_features(x, attn_mask=attn_mask, is_causal=is_causal)
        with self.coordinates(temporal_coords, location_coords):
            return super().forward_features(x, attn_mask=attn_mask, is_causal=is_causal)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            batch, height, width, dim = x.shape
            x = x.reshape(batch, height * width, dim)
        else:
            batch, dim = x.shape[0], x.shape[-1]
            height, width = self.patch_embed.grid_size
        pos_embed = resample_pos_embed(self.pos_embed, tuple(self.patch_embed.grid_size), (height, width))
        x = x + pos_embed[:, 1:]
        # Time, then location, each added on its own: the authors' order of float additions.
        for kind, values in (("time", self._temporal), ("location", self._location)):
            if values is None or kind not in self.coords_encoding:
                continue
            if values.shape[0] not in (1, batch):
                raise ValueError(f"{kind} coordinates for {values.shape[0]} images, but the batch has {batch}")
            encoder = self.temporal_embed_enc if kind == "time" else self.location_embed_enc
            x = x + encoder(values.to(x.device)).to(x.dtype)
        cls_token = (self.cls_token + pos_embed[:, :1]).expand(batch, -1, -1)
        return self.pos_drop(torch.cat([cls_token, x], dim=1))
