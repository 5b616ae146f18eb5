"""Clay as a cegate backbone: the user's bands by wavelength, and the scene's pixel size, time, place.

The encoder (backbone/clay.py) generates its patch kernel from the bands' centre wavelengths, so
any band set that `clay_bands` can name is fed as it is, in the run's order; nothing is fitted
to the bands and a run needs no embedding weights of its own. The class token comes first (one
prefix token); the blocks run through `BlockBackbone`'s loop, so the toolbox and gated training
see Clay as any other family (`blocks.N.attn.qkv`, `blocks.N.mlp`).

Clay is told the ground sample distance (it scales the position code), the acquisition week and
hour, and the latitude and longitude (`Conditions`). A run settles one set for training
(backbone/clay_inputs.py); `predict` feeds each scene its own (`scene_conditions`, from its
`SceneInfo`): its pixel size (the run's when unknown), its date and centre (zeros when unknown,
Clay's code for "not given").
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cegate_cli.backbone.band_adapt import BandMapping
from cegate_cli.backbone.base import BlockBackbone, TokenLayout
from cegate_cli.backbone.clay import (
    AUTHORS_SIZES,
    ClayEncoder,
    Conditions,
    config_from_state,
    encode_location,
    encode_time,
    encoder_state,
    load_authors_state,
)
from cegate_cli.backbone.clay_bands import ClayPlatform, band_table, check_bands, known_band_names, platform_named
from cegate_cli.backbone.clay_inputs import ClayInputs, default_inputs, settle_clay_inputs
from cegate_cli.backbone.family import FittedInputs
from cegate_cli.errors import InputError

if TYPE_CHECKING:
    from cegate_cli.data.scene_info import SceneInfo
    from cegate_cli.data.stats import BandStats


def time_code(day: _dt.date | None) -> tuple[float, float, float, float]:
    """Clay's time code of an acquisition day, taken at 00:00 (the hour is not in a scene's tags
    cegate reads); zeros when unknown."""
    return encode_time(None if day is None else _dt.datetime.combine(day, _dt.time()))


def place_code(lonlat: tuple[float, float] | None) -> tuple[float, float, float, float]:
    """Clay's location code of a (longitude, latitude) in WGS 84 degrees; zeros when unknown."""
    return encode_location(None, None) if lonlat is None else encode_location(lonlat[1], lonlat[0])


def run_conditions(inputs: ClayInputs) -> Conditions:
    """What a run tells Clay in training: its one pixel size, date and place."""
    place = None if inputs.lon is None or inputs.lat is None else (inputs.lon, inputs.lat)
    return Conditions(inputs.gsd_m, time_code(inputs.acquired), place_code(place))


def scene_conditions_of(scene: SceneInfo, run_gsd_m: float) -> Conditions:
    """What Clay is told about one scene: its own pixel size (the run's when its files give none),
    its date and centre (unknown: zeros)."""
    gsd = scene.gsd_m if scene.gsd_m is not None and math.isfinite(scene.gsd_m) and scene.gsd_m > 0 else run_gsd_m
    return Conditions(float(gsd), time_code(scene.date), place_code(scene.centre_lonlat))


class ClayBackbone(BlockBackbone):
    """Clay's blocks over (class token, patch tokens); feature maps drop the class token."""

    num_prefix_tokens = 1
    takes_scene_info = True

    def __init__(
        self,
        encoder: ClayEncoder,
        bands: Sequence[str],
        platform: ClayPlatform,
        conditions: Conditions,
        feature_layers: tuple[int, ...] | None = None,
        wavelengths_um: Sequence[float] | None = None,
    ) -> None:
        """`wavelengths_um` (a run's record) overrides the platform's table for the same bands."""
        super().__init__(encoder.depth, feature_layers)
        self.encoder = encoder
        self.bands = tuple(bands)
        self.platform = platform
        self.table = band_table(self.bands, platform)
        self.patch_size = encoder.config.patch_size
        self.embed_dim = encoder.config.dim
        self.conditions = conditions
        waves = [band.wavelength_um for band in self.table] if wavelengths_um is None else list(wavelengths_um)
        if len(waves) != len(self.bands):
            raise InputError(f"Clay: {len(waves)} wavelengths for {len(self.bands)} bands ({', '.join(self.bands)})")
        self.register_buffer("wavelengths_um", torch.tensor(waves, dtype=torch.float32), persistent=False)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.encoder.blocks

    @property
    def in_chans(self) -> int:
        return len(self.bands)

    @contextlib.contextmanager
    def with_conditions(self, conditions: Conditions | None) -> Iterator[Conditions]:
        """Feed these conditions while the block runs (None keeps the run's); yields those in effect."""
        previous = self.conditions
        self.conditions = conditions or previous
        try:
            yield self.conditions
        finally:
            self.conditions = previous

    def scene_conditions(self, scene: SceneInfo) -> contextlib.AbstractContextManager[Conditions]:
        """Feed one scene its own pixel size, date and place while `predict` maps it."""
        return self.with_conditions(scene_conditions_of(scene, self.conditions.gsd_m))

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, TokenLayout]:
        time = torch.tensor(self.conditions.time, dtype=torch.float32, device=images.device)
        location = torch.tensor(self.conditions.location, dtype=torch.float32, device=images.device)
        tokens, grid = self.encoder.embed(images, self.wavelengths_um, self.conditions.gsd_m, time, location)
        return tokens, TokenLayout(grid, self.num_prefix_tokens)


@dataclass
class PretrainedClay:
    """Clay's encoder with its weights; a run's bands meet it by name and wavelength."""

    encoder: ClayEncoder
    architecture: str

    @property
    def band_names(self) -> tuple[str, ...]:
        """Every band Clay has a wavelength for: what a run's bands are matched to, by name."""
        return known_band_names()

    @property
    def embed_dim(self) -> int:
        return int(self.encoder.config.dim)

    def patch_size(self, options: Any) -> int:
        return int(self.encoder.config.patch_size)

    def check_run(self, bands: Sequence[str], options: Any) -> None:
        check_bands(bands)

    def fit_inputs(self, options: Any, images: Sequence[Path], stats: BandStats) -> FittedInputs:
        inputs, stats, warnings = settle_clay_inputs(stats.names, images, stats)
        return FittedInputs(inputs, stats, tuple(warnings))

    def build(self, bands: Sequence[str], stats: BandStats | None, inputs: ClayInputs | None) -> tuple[ClayBackbone, BandMapping]:
        """The backbone for `bands` fed as `inputs` says (None: `clay_inputs.default_inputs`)."""
        check_bands(bands)
        inputs = inputs or default_inputs(bands)
        recorded = tuple(band.band for band in inputs.bands)
        if recorded != tuple(bands):
            raise InputError(f"Clay inputs were settled for the bands {', '.join(recorded)}, not {', '.join(bands)}")
        backbone = ClayBackbone(self.encoder, bands, platform_named(inputs.platform), run_conditions(inputs), wavelengths_um=inputs.wavelengths_um)
        known = self.band_names
        return backbone, BandMapping(tuple(bands), tuple(known.index(band.name) for band in backbone.table))

    def pretrained_backbone(self) -> ClayBackbone:
        """Clay fed the Sentinel-2 bands it knows (what `inspect --backbone` counts)."""
        return self.build(platform_named("sentinel-2-l2a").band_names, None, None)[0]


_RELEASES = {"large": "clay-v1.5", "base": "clay-v1-base"}
"""The authors' sizes that were published, by the name of their release."""


def architecture_name(encoder: ClayEncoder) -> str:
    """`clay-v1.5` or `clay-v1-base` for the published sizes, else `clay-<authors' size>`."""
    config = encoder.config
    for name, size in AUTHORS_SIZES.items():
        if (size.dim, size.depth, size.heads, size.dim_head, size.mlp_ratio) == (config.dim, config.depth, config.heads, config.dim_head, config.mlp_ratio):
            return _RELEASES.get(name, f"clay-{name}")
    return f"clay-{config.dim}x{config.depth}"


def load_pretrained_clay(weights_path: Path) -> PretrainedClay:
    """Clay's encoder from the authors' checkpoint (`model.encoder.*` of their Lightning file) or a
    file of the encoder's keys alone, read as tensors only and loaded strictly; its size is read
    from the weights' shapes."""
    from cegate_cli.backbone.weights_io import read_weights

    try:
        checkpoint = read_weights(weights_path)
    except InputError as exc:
        raise InputError(
            f"{exc}. Clay's checkpoint must hold tensors only; from a copy you trust, save its state_dict "
            "entries under model.encoder. as clay-v1.5.safetensors in a folder of their own and give that folder"
        ) from None
    state = encoder_state(checkpoint, str(weights_path))
    with torch.device("meta"):  # no random initialisation of what the weights replace (311M values at v1.5)
        encoder = ClayEncoder(config_from_state(state))
    encoder = encoder.to_empty(device="cpu")
    load_authors_state(encoder, state, str(weights_path))  # strict: every parameter is written
    return PretrainedClay(encoder.eval(), architecture_name(encoder))
