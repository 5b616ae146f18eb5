"""How a run feeds Clay (`ClayInputs`: the platform, each band's wavelength, pixel size, date,
place, normalisation), settled from the training images and kept in run.json (`ClayRecord`),
without loading torch.

Kept apart from the model (backbone/clay_backbone.py) so `inspect` reads a run's record, and the
family module registers, without the model stack.

What Clay is told, and where it comes from:
- the platform (`clay_bands.choose_platform`): the one among Clay's seven pretraining platforms
  that has every band, nearest in pixel size; it gives each band's centre wavelength and the
  authors' statistics;
- the pixel size: the training images' median (`imagery`), else the platform's own (`platform`);
- the date and place: the training images' median date and scene centre (`imagery`), else
  unknown (`unknown`), which Clay is told as zeros, as the authors trained with for a share of
  their chips. A date without an hour is taken at 00:00, which is what the authors' time code
  gives for a date alone (and the time their NAIP items carry);
- normalisation: the platform's statistics when the run's band means are within a factor of 3
  of them (the same units as pretraining: `pretrained`), else the run's own (`data`).

One value per run in training (the crops are read without their scene's facts); `predict` feeds
each scene its own pixel size, date and place (`ClayBackbone.scene_conditions`).
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cegate_cli.backbone.clay_bands import ClayPlatform, band_table, choose_platform, platform_named
from cegate_cli.errors import InputError
from cegate_cli.infra.record_fields import FieldTypeError, record_fields

if TYPE_CHECKING:
    from cegate_cli.data.scene_info import SceneInfo
    from cegate_cli.data.stats import BandStats

SECTION = "backbone.clay"
SOURCES = ("imagery", "platform", "unknown")
NORMALIZE_CHOICES = ("pretrained", "data")
SCENES_READ = 64
"""The training images whose metadata settle the run's pixel size, date and place (the first ones)."""
UNIT_RATIO = 3.0
"""The run's band means within this factor of the platform's: the same units as pretraining."""


@dataclass(frozen=True)
class ClayBandUse:
    """One of the run's bands as Clay sees it: the platform's band it is, and its wavelength."""

    band: str
    platform_band: str
    wavelength_um: float


@dataclass(frozen=True)
class ClayInputs:
    """What a run tells Clay beside the pixels; stored in run.json so `predict` does the same."""

    platform: str
    bands: tuple[ClayBandUse, ...]
    gsd_m: float
    gsd_from: str = "imagery"
    date: str | None = None
    """ISO date (YYYY-MM-DD); None: unknown."""
    date_from: str = "unknown"
    lon: float | None = None
    lat: float | None = None
    """The place, WGS 84 degrees; None: unknown."""
    place_from: str = "unknown"
    normalize: str = "data"
    """'pretrained': the platform's statistics (the authors'); 'data': the run's own."""

    @property
    def own_statistics(self) -> bool:
        return self.normalize == "data"

    @property
    def wavelengths_um(self) -> tuple[float, ...]:
        return tuple(band.wavelength_um for band in self.bands)

    @property
    def acquired(self) -> _dt.date | None:
        return None if self.date is None else _dt.date.fromisoformat(self.date)

    def check(self) -> None:
        """Refuse values no run can feed (a damaged run.json names its field here)."""
        platform_named(self.platform)
        if not (math.isfinite(self.gsd_m) and self.gsd_m > 0):
            raise InputError(f"{SECTION}.gsd_m {self.gsd_m}: must be a positive number of metres")
        for name in ("gsd_from", "date_from", "place_from"):
            if getattr(self, name) not in SOURCES:
                raise InputError(f"{SECTION}.{name} {getattr(self, name)!r}: expected {', '.join(SOURCES)}")
        if self.normalize not in NORMALIZE_CHOICES:
            raise InputError(f"{SECTION}.normalize {self.normalize!r}: expected {' or '.join(NORMALIZE_CHOICES)}")
        if self.date is not None:
            try:
                _dt.date.fromisoformat(self.date)
            except ValueError:
                raise InputError(f"{SECTION}.date {self.date!r}: not a date (YYYY-MM-DD)") from None
        if (self.lon is None) != (self.lat is None):
            raise InputError(f"{SECTION}: lon and lat are given together or not at all")
        if self.lon is not None and self.lat is not None and not (-180 <= self.lon <= 180 and -90 <= self.lat <= 90):
            raise InputError(f"{SECTION}: ({self.lon}, {self.lat}) is not a longitude and latitude")
        if not all(math.isfinite(w) and w > 0 for w in self.wavelengths_um):
            raise InputError(f"{SECTION}.bands: every wavelength must be a positive number of micrometres")

    def describe_conditions(self) -> str:
        date = f"date {self.date} ({self.date_from})" if self.date else "date unknown (zeros)"
        if self.lon is not None and self.lat is not None:
            lon = f"{abs(self.lon):.3f} {'E' if self.lon >= 0 else 'W'}"
            lat = f"{abs(self.lat):.3f} {'N' if self.lat >= 0 else 'S'}"
            place = f"place {lon} {lat} ({self.place_from})"
        else:
            place = "place unknown (zeros)"
        return f"{self.gsd_m:g} m pixels ({self.gsd_from}), {date}, {place}, {self.normalize} normalisation"


@dataclass(frozen=True)
class ClayShape:
    """The encoder's dimensions, as read from the checkpoint's shapes (`clay.config_from_state`)."""

    dim: int
    depth: int
    heads: int
    dim_head: int
    mlp_ratio: float
    patch_size: int


@dataclass(frozen=True)
class ClayRecord:
    """Clay's section of run.json's backbone record: its inputs, and the encoder's dimensions."""

    inputs: ClayInputs
    encoder: ClayShape

    def to_dict(self) -> dict[str, Any]:
        inputs = asdict(self.inputs)
        inputs["bands"] = [asdict(band) for band in self.inputs.bands]
        return {**inputs, "encoder": asdict(self.encoder)}

    @classmethod
    def from_dict(cls, data: Any) -> ClayRecord:
        if not isinstance(data, dict):
            raise FieldTypeError(f"{SECTION} is not an object of fields")
        if "encoder" not in data:
            raise FieldTypeError(f"{SECTION}.encoder is missing")
        own = {key: value for key, value in data.items() if key != "encoder"}
        try:
            inputs = ClayInputs(**record_fields(ClayInputs, own, section=SECTION, unknown="drop"))
            shape = ClayShape(**record_fields(ClayShape, data["encoder"], section=f"{SECTION}.encoder", unknown="drop"))
            inputs.check()
        except TypeError as exc:  # a required field left out
            raise FieldTypeError(f"{SECTION} is damaged ({exc})") from None
        except InputError as exc:
            raise FieldTypeError(str(exc)) from None
        return cls(inputs, shape)


def band_uses(bands: Sequence[str], platform: ClayPlatform) -> tuple[ClayBandUse, ...]:
    """The run's bands on `platform` (`clay_bands.band_table`: a band it lacks is an InputError)."""
    return tuple(ClayBandUse(name, band.authors_name, band.wavelength_um) for name, band in zip(bands, band_table(bands, platform)))


def default_inputs(bands: Sequence[str]) -> ClayInputs:
    """Inputs for a backbone built without a run: the first platform with every band, at its own
    pixel size, time and place unknown, the run's own statistics."""
    platform = choose_platform(bands)
    return ClayInputs(platform.name, band_uses(bands, platform), platform.gsd_m, gsd_from="platform")


def settle_clay_inputs(bands: Sequence[str], images: Sequence[Path], stats: BandStats) -> tuple[ClayInputs, BandStats, list[str]]:
    """(inputs, the statistics to normalise with, warnings) for a run on `images` (paths): see the
    module's docstring for each choice."""
    from cegate_cli.data.raster import open_raster
    from cegate_cli.data.scene_info import read_scene_info

    scenes: list[SceneInfo] = []
    for path in list(images)[:SCENES_READ]:
        with open_raster(path) as ds:  # a STAC item opens as its bands (data/stac.py)
            scenes.append(read_scene_info(ds))
    warnings: list[str] = []
    sizes = [s.gsd_m for s in scenes if s.gsd_m is not None and math.isfinite(s.gsd_m) and s.gsd_m > 0]
    gsd = float(statistics.median(sizes)) if sizes else None
    platform = choose_platform(bands, gsd)
    if gsd is None:
        gsd = platform.gsd_m
        warnings.append(f"the images carry no georeferencing: Clay is told the {platform.name} pixel size, {gsd:g} m")
    dates = sorted(s.date for s in scenes if s.date is not None)
    places = [s.centre_lonlat for s in scenes if s.centre_lonlat is not None]
    if not dates:
        warnings.append("the images' tags give no acquisition date: Clay is told the time is unknown (zeros)")
    normalize = "pretrained" if _pretraining_units(stats, platform) else "data"
    if normalize == "pretrained":
        table = band_table(stats.names, platform)
        stats = type(stats)(tuple(stats.names), tuple(b.mean for b in table), tuple(b.std for b in table))
    inputs = ClayInputs(
        platform=platform.name,
        bands=band_uses(bands, platform),
        gsd_m=gsd,
        gsd_from="imagery" if sizes else "platform",
        date=dates[(len(dates) - 1) // 2].isoformat() if dates else None,
        date_from="imagery" if dates else "unknown",
        lon=float(statistics.median(p[0] for p in places)) if places else None,
        lat=float(statistics.median(p[1] for p in places)) if places else None,
        place_from="imagery" if places else "unknown",
        normalize=normalize,
    )
    return inputs, stats, warnings


def _pretraining_units(stats: BandStats, platform: ClayPlatform) -> bool:
    """Whether every band's mean is within `UNIT_RATIO` of the platform's (sign included: radar
    backscatter in dB is negative), i.e. the data come in the units Clay was pretrained on."""
    table = band_table(stats.names, platform)
    return all(band.mean != 0 and 1 / UNIT_RATIO <= mean / band.mean <= UNIT_RATIO for mean, band in zip(stats.mean, table))
