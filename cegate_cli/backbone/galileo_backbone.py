"""Galileo as a cegate backbone: the user's bands into Galileo's channel groups, one token per group.

Galileo (backbone/galileo.py) takes Sentinel-1/2 bands in channel groups and gives each patch one
token per group it was fed. This module is the bridge from a run's images (B, C, H, W, each band
normalised with the run's statistics) to those groups:
- bands are matched by canonical name (`cegate_cli.data.bands`): Sentinel-2 codes (B2..B12, B8A) and
  common names (blue, green, red, nir, rededge1-3, nir08, swir16, swir22) and VV/VH; aerial RGB(N)
  imagery fills the S2 RGB (and 10 m NIR) groups;
- NDVI is computed when red and nir are present, from the raw values (the run's statistics undo
  the normalisation), exactly as the authors compute it: (nir - red) / (nir + red);
- a group with any band missing is left out, as the authors do; none filled is an error that
  says what each group needs;
- the authors scale each band so that mean +- 2 std maps to [0, 1]. A run's z-scores z become
  z / 4 + 1/2, which is exactly the authors' scaling when the run's statistics are theirs
  (`--normalize pretrained`, Sentinel-2 reflectance) and the same shape of input otherwise;
- positions are scaled by the ground sample distance, and the month embedding uses the run's month;
  `predict` feeds each scene its own pixel size and acquisition month (`scene_conditions`).

`PretrainedGalileo` is what the Galileo family (galileo_family.py) loads: it builds this backbone
for a run's bands and settles the run's inputs from its images (`resolve_galileo_inputs`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cegate_cli.backbone.band_adapt import BandMapping
from cegate_cli.backbone.base import BlockBackbone, TokenLayout
from cegate_cli.backbone.family import FittedInputs
from cegate_cli.backbone.galileo import (
    GALILEO_NANO_CONFIG,
    GROUPS,
    SPACE_TIME_BANDS,
    GalileoEncoder,
    PretrainedNormalization,
    load_galileo,
)
from cegate_cli.backbone.galileo_options import (
    DEFAULT_MONTH,
    DEFAULT_PATCH_SIZE,
    GalileoInputs,
    GalileoOptions,
    GroupFill,
)
from cegate_cli.errors import InputError

if TYPE_CHECKING:
    from cegate_cli.data.scene_info import SceneInfo
    from cegate_cli.data.stats import BandStats

# cegate canonical band name -> Galileo space-time band
GALILEO_BAND_OF: dict[str, str] = {
    "vv": "VV",
    "vh": "VH",
    "blue": "B2",
    "green": "B3",
    "red": "B4",
    "red_edge_1": "B5",
    "red_edge_2": "B6",
    "red_edge_3": "B7",
    "nir": "B8",
    "nir_narrow": "B8A",
    "swir_1": "B11",
    "swir_2": "B12",
}
CANONICAL_OF: dict[str, str] = {galileo: canonical for canonical, galileo in GALILEO_BAND_OF.items()}


@dataclass(frozen=True)
class GroupPlan:
    """Which Galileo groups a band list fills, and from which of the run's channels."""

    groups: tuple[str, ...]
    channel_of: dict[str, int]
    """Galileo band -> index of the run's channel that feeds it (only bands of filled groups)."""
    ndvi: tuple[int, int] | None
    """(red channel, nir channel) when NDVI is computed."""

    def describe(self, bands: Sequence[str]) -> tuple[GroupFill, ...]:
        """For run.json and `inspect`: each filled group with the user's bands that fill it."""
        rows = []
        for group in self.groups:
            if group == "NDVI":
                assert self.ndvi is not None
                rows.append(GroupFill(group, (f"computed from {bands[self.ndvi[0]]}, {bands[self.ndvi[1]]}",)))
            else:
                members = [SPACE_TIME_BANDS[i] for i in GROUPS[group]]
                rows.append(GroupFill(group, tuple(bands[self.channel_of[m]] for m in members)))
        return tuple(rows)


def plan_groups(bands: Sequence[str]) -> GroupPlan:
    """Fill every group whose bands are all present; an image filling none is an error."""
    channel_of: dict[str, int] = {}
    for index, name in enumerate(bands):
        galileo = GALILEO_BAND_OF.get(name)
        if galileo is not None and galileo not in channel_of:
            channel_of[galileo] = index
    groups: list[str] = []
    ndvi = None
    for group, members in GROUPS.items():
        if group == "NDVI":
            if "B4" in channel_of and "B8" in channel_of:
                groups.append(group)
                ndvi = (channel_of["B4"], channel_of["B8"])
        elif all(SPACE_TIME_BANDS[i] in channel_of for i in members):
            groups.append(group)
    if not groups:
        needs = "; ".join(
            f"{group}: {', '.join(CANONICAL_OF.get(SPACE_TIME_BANDS[i], SPACE_TIME_BANDS[i]) for i in members)}" if group != "NDVI" else "NDVI: red and nir"
            for group, members in GROUPS.items()
        )
        raise InputError(
            f"bands {', '.join(bands)} fill none of Galileo's channel groups; each group needs all of its bands "
            f"({needs}). Name the bands in the files' descriptions, or with --bands (e.g. --bands red=1,green=2,blue=3,nir=4)"
        )
    used = {SPACE_TIME_BANDS[i] for g in groups if g != "NDVI" for i in GROUPS[g]}
    return GroupPlan(tuple(groups), {b: c for b, c in channel_of.items() if b in used}, ndvi)


def pretrained_statistics(bands: Sequence[str], normalization: PretrainedNormalization) -> tuple[list[float], list[float]] | None:
    """The authors' (mean, std) for each band, or None when a band has no Galileo counterpart."""
    mean, std = [], []
    for name in bands:
        galileo = GALILEO_BAND_OF.get(name)
        if galileo is None:
            return None
        index = normalization.bands.index(galileo)
        mean.append(normalization.mean[index])
        std.append(normalization.std[index])
    return mean, std


def looks_like_pretraining_data(bands: Sequence[str], mean: Sequence[float], normalization: PretrainedNormalization) -> bool:
    """`--normalize auto`: the authors' statistics fit when every band is a Galileo band and its
    mean lies within a factor of 3 of the pretraining mean (Sentinel-2 L1C/L2A digital numbers,
    reflectance x 10,000). Aerial 8-bit imagery or 0-1 reflectance is far outside that."""
    reference = pretrained_statistics(bands, normalization)
    if reference is None:
        return False
    return all(ref > 0 and 1 / 3 <= value / ref <= 3 for value, ref in zip(mean, reference[0]))


class GalileoBackbone(BlockBackbone):
    """Galileo's blocks over one token per (patch, filled group); maps average a patch's groups."""

    num_prefix_tokens = 0
    takes_scene_info = True

    def __init__(
        self,
        encoder: GalileoEncoder,
        bands: Sequence[str],
        band_mean: Sequence[float],
        band_std: Sequence[float],
        inputs: GalileoInputs,
        feature_layers: tuple[int, ...] | None = None,
    ) -> None:
        inputs.check(encoder.config.max_patch_size)
        super().__init__(encoder.depth, feature_layers)
        self.encoder = encoder
        self.bands = tuple(bands)
        self.inputs = inputs
        self.plan = plan_groups(self.bands)
        self.patch_size = inputs.patch_size
        self.embed_dim = encoder.embed_dim
        self.register_buffer("band_mean", torch.tensor(list(band_mean), dtype=torch.float32), persistent=False)
        self.register_buffer("band_std", torch.tensor(list(band_std), dtype=torch.float32), persistent=False)
        self._channels = [self.plan.channel_of[b] for b in SPACE_TIME_BANDS if b in self.plan.channel_of]
        self._slots = [SPACE_TIME_BANDS.index(b) for b in SPACE_TIME_BANDS if b in self.plan.channel_of]
        self._gsd_m, self._month = inputs.gsd_m, inputs.month

    @contextlib.contextmanager
    def scene_conditions(self, scene: SceneInfo) -> Iterator[tuple[float, int]]:
        """Feed one scene its own pixel size and acquisition month while the block runs.

        Galileo's positions are scaled by the ground sample distance and it embeds the month, so
        a scene flown at another resolution or season than the training images is described as
        it is. Unknown keeps the run's value; so does the month when the run's came from `--month`
        (the user said what the month is). Yields the (gsd in metres, month) in effect.
        """
        gsd_m, month = scene.gsd_m, scene.month
        gsd = self.inputs.gsd_m if gsd_m is None or not (math.isfinite(gsd_m) and gsd_m > 0) else float(gsd_m)
        chosen = self.inputs.month if month is None or self.inputs.month_from == "option" else int(month)
        if not 0 <= chosen <= 11:
            raise InputError(f"month {chosen + 1}: must be 1 (January) to 12 (December)")
        previous = self._gsd_m, self._month
        self._gsd_m, self._month = gsd, chosen
        try:
            yield gsd, chosen
        finally:
            self._gsd_m, self._month = previous

    @property
    def blocks(self) -> nn.ModuleList:
        return self.encoder.blocks

    @property
    def in_chans(self) -> int:
        return len(self.bands)

    def galileo_input(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) z-scores -> (B, H, W, 1, 13) in the authors' scale (unfed bands stay 0)."""
        batch, _, height, width = images.shape
        s_t_x = images.new_zeros(batch, height, width, 1, len(SPACE_TIME_BANDS))
        s_t_x[..., 0, self._slots] = (images[:, self._channels] / 4 + 0.5).permute(0, 2, 3, 1)
        if self.plan.ndvi is not None:
            red_c, nir_c = self.plan.ndvi
            red = images[:, red_c] * self.band_std[red_c] + self.band_mean[red_c]
            nir = images[:, nir_c] * self.band_std[nir_c] + self.band_mean[nir_c]
            total = nir + red
            ndvi = torch.where(total.abs() > 1e-6, (nir - red) / total.where(total.abs() > 1e-6, torch.ones_like(total)), 0)
            s_t_x[..., 0, SPACE_TIME_BANDS.index("NDVI")] = ndvi.clamp(-1, 1)
        return s_t_x

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, TokenLayout]:
        batch = images.shape[0]
        months = torch.full((batch, 1), self._month, dtype=torch.long, device=images.device)
        tokens = self.encoder.embed(self.galileo_input(images), self.plan.groups, months, self.patch_size, self._gsd_m)
        _, rows, cols, _, groups, dim = tokens.shape
        return tokens.reshape(batch, rows * cols * groups, dim), TokenLayout((rows, cols), 0, groups=groups)


FINE_PIXELS_M = 2.0
"""Pixels finer than this are aerial or drone imagery, far from Galileo's 10 m pretraining: adapt
says that another backbone may map them better (measured on NAIP at 0.6 m, docs/benchmarks-real.md)."""


def resolve_galileo_inputs(
    options: GalileoOptions,
    images: Sequence[Any],
    stats: BandStats,
    normalization: PretrainedNormalization,
) -> tuple[GalileoInputs, BandStats, list[str], list[str]]:
    """(inputs, the statistics to normalise with, warnings, notes) for a run on `images` (paths).

    Ground sample distance: the median pixel size of the images, in metres. Month: `options.month`,
    else the most common acquisition month the images' tags give, else July. Normalisation:
    the authors' statistics when asked, or (auto) when the data look like their Sentinel-2 data.
    """
    import statistics
    from collections import Counter

    from cegate_cli.data.raster import open_raster
    from cegate_cli.data.scene_info import acquisition_month, ground_sample_distance
    from cegate_cli.data.stats import BandStats

    options.check()
    warnings: list[str] = []
    notes: list[str] = []  # advice on a healthy run, not a problem
    sizes, months = [], []
    for path in list(images)[:64]:
        with open_raster(path) as ds:  # a STAC item opens as its bands (data/stac.py)
            size, month = ground_sample_distance(ds), acquisition_month(ds)
        if size is not None:
            sizes.append(size)
        if month is not None:
            months.append(month)
    if sizes:
        gsd = float(statistics.median(sizes))
        if gsd < FINE_PIXELS_M:
            notes.append(
                f"the images have {gsd:.2g} m pixels; Galileo was pretrained on 10 m Sentinel-1/2 imagery, and on the aerial "
                "benchmark cegate measured (NAIP, 0.6 m) `--backbone tiny` mapped about as well in less time: try it too "
                "(docs/benchmarks-real.md)"
            )
    else:
        gsd = 10.0
        warnings.append("the images carry no georeferencing: Galileo's positions assume 10 m pixels")
    if options.month is not None:
        month, month_from = options.month, "option"
    elif months:
        month, month_from = Counter(months).most_common(1)[0][0], "imagery"
    else:
        month, month_from = DEFAULT_MONTH, "default"
    normalize = options.normalize
    if normalize == "auto":
        normalize = "pretrained" if looks_like_pretraining_data(stats.names, stats.mean, normalization) else "data"
    if normalize == "pretrained":
        reference = pretrained_statistics(stats.names, normalization)
        if reference is None:
            others = [b for b in stats.names if b not in GALILEO_BAND_OF]
            raise InputError(
                f"--normalize pretrained: band(s) {', '.join(others)} have no Galileo pretraining statistics; "
                "use --normalize data or leave those bands out with --bands"
            )
        stats = BandStats(tuple(stats.names), tuple(reference[0]), tuple(reference[1]))
    inputs = GalileoInputs(options.patch_size or DEFAULT_PATCH_SIZE, gsd, month, normalize, month_from)
    return inputs, stats, warnings, notes


@dataclass
class PretrainedGalileo:
    """Galileo's encoder with its weights, and the statistics its pretraining data were scaled by
    (the same for every size: one pretraining set)."""

    encoder: GalileoEncoder
    normalization: PretrainedNormalization
    architecture: str

    @property
    def band_names(self) -> tuple[str, ...]:
        """Galileo's space-time bands (VV ... B12, NDVI): what a run's bands are matched to."""
        return SPACE_TIME_BANDS

    @property
    def embed_dim(self) -> int:
        return int(self.encoder.config.embed_dim)

    def patch_size(self, options: GalileoOptions | None) -> int:
        return (options.patch_size if options is not None else None) or DEFAULT_PATCH_SIZE

    def check_run(self, bands: Sequence[str], options: GalileoOptions | None) -> None:
        """The patch against the encoder's kernels (before the crop is checked against the patch),
        and bands that fill no group (said before any pixel is read)."""
        (options or GalileoOptions()).check(self.encoder.config.max_patch_size)
        plan_groups(bands)

    def fit_inputs(self, options: GalileoOptions | None, images: Sequence[Path], stats: BandStats) -> FittedInputs:
        inputs, stats, warnings, notes = resolve_galileo_inputs(options or GalileoOptions(), images, stats, self.normalization)
        return FittedInputs(inputs, stats, tuple(warnings), tuple(notes))

    def build(self, bands: Sequence[str], stats: BandStats | None, inputs: GalileoInputs | None) -> tuple[GalileoBackbone, BandMapping]:
        """Galileo also needs the run's band statistics (to compute NDVI from raw values)."""
        if stats is None:
            raise ValueError("a Galileo backbone needs the run's band statistics")
        backbone = GalileoBackbone(self.encoder, bands, stats.mean, stats.std, inputs or GalileoInputs())
        used = backbone.plan.channel_of
        mapping = BandMapping(
            tuple(bands),
            tuple(self.band_names.index(GALILEO_BAND_OF[b]) if GALILEO_BAND_OF.get(b) in used else None for b in bands),
        )
        return backbone, mapping

    def pretrained_backbone(self) -> GalileoBackbone:
        """Galileo fed every band it knows, under its authors' statistics."""
        from cegate_cli.data.stats import BandStats

        bands = [CANONICAL_OF[b] for b in self.band_names if b in CANONICAL_OF]
        mean, std = pretrained_statistics(bands, self.normalization)  # type: ignore[misc]
        return self.build(bands, BandStats(tuple(bands), tuple(mean), tuple(std)), None)[0]


GALILEO_SIZES = {(128, 4): "nano", (192, 12): "tiny", (768, 12): "base"}
"""(embedding, depth) -> the authors' size name."""


def load_pretrained_galileo(config_path: Path, weights_path: Path) -> PretrainedGalileo:
    """Galileo from its config and weights; the pretraining statistics ship with cegate."""
    encoder = load_galileo(weights_path, config_path)
    size = GALILEO_SIZES.get((encoder.embed_dim, encoder.depth), f"{encoder.embed_dim}x{encoder.depth}")
    return PretrainedGalileo(encoder.eval(), PretrainedNormalization.from_json(GALILEO_NANO_CONFIG), f"galileo-{size}")
