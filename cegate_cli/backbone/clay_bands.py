"""Which wavelength and statistics Clay knows each of a user's bands by.

Clay describes a band only by its centre wavelength in micrometres, and was pretrained on seven
platforms with their own per-band normalisation. Both come from the authors' configs/metadata.yaml
(github.com/Clay-foundation/model at a5790cef), the file their training and tutorials read; the
platforms are the seven Clay v1.5 was trained on. Bands are keyed by cegate's canonical names
(`cegate_cli.data.band_names`), so Sentinel-2 codes (B2, B8A, ...), Landsat codes (SR_B5, ...), common
names (nir08, swir16) and NAIP's red/green/blue/nir all arrive at the same entry; MODIS bands keep
their product names (sur_refl_b01 ...), which have no canonical name.

The same name has another wavelength on another platform (red: 0.665 um on Sentinel-2, 0.65 on
Landsat and NAIP, 0.635 on LINZ), so a band set is matched to one platform (`choose_platform`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cegate_cli.data.band_names import canonical_band_name
from cegate_cli.errors import InputError


@dataclass(frozen=True)
class ClayBand:
    name: str
    """cegate's canonical name."""
    authors_name: str
    wavelength_um: float
    mean: float
    std: float


@dataclass(frozen=True)
class ClayPlatform:
    name: str
    gsd_m: float
    bands: tuple[ClayBand, ...]

    def band(self, name: str) -> ClayBand | None:
        canonical = canonical_band_name(name)
        return next((band for band in self.bands if band.name == canonical), None)

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(band.name for band in self.bands)


def _platform(name: str, gsd_m: float, rows: Sequence[tuple[str, float, float, float]]) -> ClayPlatform:
    return ClayPlatform(name, gsd_m, tuple(ClayBand(canonical_band_name(b), b, wave, mean, std) for b, wave, mean, std in rows))


# (authors' band name, centre wavelength in um, mean, std), in the authors' band order.
PLATFORMS: tuple[ClayPlatform, ...] = (
    _platform(
        "sentinel-2-l2a",
        10.0,
        (
            ("blue", 0.493, 1105.0, 1809.0),
            ("green", 0.56, 1355.0, 1757.0),
            ("red", 0.665, 1552.0, 1888.0),
            ("rededge1", 0.704, 1887.0, 1870.0),
            ("rededge2", 0.74, 2422.0, 1732.0),
            ("rededge3", 0.783, 2630.0, 1697.0),
            ("nir", 0.842, 2743.0, 1742.0),
            ("nir08", 0.865, 2785.0, 1648.0),
            ("swir16", 1.61, 2388.0, 1470.0),
            ("swir22", 2.19, 1835.0, 1379.0),
        ),
    ),
    _platform(
        "landsat-c2l2-sr",
        30.0,
        (
            ("red", 0.65, 13705.0, 9578.0),
            ("green", 0.56, 13310.0, 9408.0),
            ("blue", 0.48, 12474.0, 10144.0),
            ("nir08", 0.86, 17801.0, 8277.0),
            ("swir16", 1.6, 14615.0, 5300.0),
            ("swir22", 2.2, 12701.0, 4522.0),
        ),
    ),
    _platform(
        "landsat-c2l1",
        30.0,
        (
            ("red", 0.65, 10678.0, 6025.0),
            ("green", 0.56, 10563.0, 5411.0),
            ("blue", 0.48, 11083.0, 5468.0),
            ("nir08", 0.86, 14792.0, 6746.0),
            ("swir16", 1.6, 12276.0, 5897.0),
            ("swir22", 2.2, 10114.0, 4850.0),
        ),
    ),
    _platform(
        "naip",
        1.0,
        (
            ("red", 0.65, 110.16, 47.23),
            ("green", 0.56, 115.41, 39.82),
            ("blue", 0.48, 98.15, 35.43),
            ("nir", 0.842, 139.04, 49.86),
        ),
    ),
    _platform(
        "linz",
        0.5,
        (
            ("red", 0.635, 89.96, 41.83),
            ("green", 0.555, 99.46, 36.96),
            ("blue", 0.465, 89.51, 31.45),
        ),
    ),
    _platform("sentinel-1-rtc", 10.0, (("vv", 3.5, -12.113, 8.314), ("vh", 4.0, -18.673, 8.017))),
    _platform(
        "modis",
        500.0,
        (
            ("sur_refl_b01", 0.645, 1072.0, 1643.0),
            ("sur_refl_b02", 0.858, 1624.0, 1878.0),
            ("sur_refl_b03", 0.469, 931.0, 1449.0),
            ("sur_refl_b04", 0.555, 1023.0, 1538.0),
            ("sur_refl_b05", 1.24, 1599.0, 1763.0),
            ("sur_refl_b06", 1.64, 1404.0, 1618.0),
            ("sur_refl_b07", 2.13, 1051.0, 1396.0),
        ),
    ),
)
PLATFORM_NAMES: tuple[str, ...] = tuple(platform.name for platform in PLATFORMS)


def platform_named(name: str) -> ClayPlatform:
    for platform in PLATFORMS:
        if platform.name == name:
            return platform
    raise InputError(f"Clay platform {name!r}: choose one of {', '.join(PLATFORM_NAMES)}")


def known_band_names() -> tuple[str, ...]:
    """Every band Clay has a wavelength for (canonical names, each once, in the platforms' order)."""
    return tuple(dict.fromkeys(band.name for platform in PLATFORMS for band in platform.bands))


def check_bands(bands: Sequence[str]) -> None:
    """Refuse, in one line, bands Clay has no wavelength for (listing those it has), then band sets
    no single platform holds (`choose_platform`)."""
    unknown = [name for name in bands if not any(platform.band(name) for platform in PLATFORMS)]
    if unknown:
        raise InputError(
            f"band(s) {', '.join(unknown)}: Clay has no wavelength for them; it knows {', '.join(known_band_names())} "
            "(also by their Sentinel-2 codes B2-B8A, B11, B12 and Landsat codes SR_B2-SR_B7). "
            "Leave them out with --bands"
        )
    choose_platform(bands)


def choose_platform(bands: Sequence[str], gsd_m: float | None = None) -> ClayPlatform:
    """The platform that knows every band; among several, the one whose pixel size is nearest
    `gsd_m` (by ratio), then the first listed (Landsat surface reflectance before level 1)."""
    fitting = [platform for platform in PLATFORMS if all(platform.band(name) for name in bands)]
    if not fitting:
        known = "; ".join(f"{p.name}: {', '.join(b.name for b in p.bands)}" for p in PLATFORMS)
        raise InputError(
            f"bands {', '.join(bands)}: no platform Clay was pretrained on has all of them, so their wavelengths "
            f"are unknown ({known}). Name the bands in the files' descriptions or choose them with --bands"
        )
    if gsd_m is None or not (math.isfinite(gsd_m) and gsd_m > 0):
        return fitting[0]
    return min(fitting, key=lambda platform: abs(math.log(platform.gsd_m / gsd_m)))


def band_table(bands: Sequence[str], platform: ClayPlatform) -> tuple[ClayBand, ...]:
    """Each band's entry on `platform`, in the order given; a band it lacks is an InputError."""
    found = [platform.band(name) for name in bands]
    missing = [name for name, band in zip(bands, found) if band is None]
    if missing:
        raise InputError(f"band(s) {', '.join(missing)} are not among Clay's {platform.name} bands ({', '.join(platform.band_names)})")
    return tuple(band for band in found if band is not None)
