"""Band names: the one vocabulary cegate uses for bands, and how product names map onto it.

Kept apart from `bands.py` (which opens rasters to find where each band sits) so that readers of
other formats (STAC items name bands in their JSON) can use the names without opening anything.
"""

from __future__ import annotations

import re

# Canonical names; "nir" is the broad NIR (Sentinel-2 B08, ~842 nm, STAC common name "nir"),
# "nir_narrow" the narrow one (Sentinel-2 B8A, Landsat 8/9 OLI B5, STAC "nir08"; HLS and Prithvi
# call it NIR_NARROW). They are different bands and are never silently swapped.
CANONICAL_BANDS = (
    "coastal",
    "blue",
    "green",
    "red",
    "red_edge_1",
    "red_edge_2",
    "red_edge_3",
    "nir",
    "nir_narrow",
    "water_vapour",
    "cirrus",
    "swir_1",
    "swir_2",
)

# Keys are squashed (lower case, no spaces, underscores or hyphens) so "SWIR 1", "swir-1",
# "swir_1" and "SWIR1" all meet the same entry.
_ALIASES: dict[str, str] = {
    "b": "blue",
    "blue": "blue",
    "g": "green",
    "green": "green",
    "r": "red",
    "red": "red",
    "coastal": "coastal",
    "coastalaerosol": "coastal",
    "aerosol": "coastal",
    "ultrablue": "coastal",
    "nir": "nir",
    "nirbroad": "nir",
    "broadnir": "nir",
    "nearinfrared": "nir",
    "nir1": "nir",
    "nirnarrow": "nir_narrow",
    "narrownir": "nir_narrow",
    "nir08": "nir_narrow",
    "nirn": "nir_narrow",
    "nir09": "water_vapour",
    "watervapour": "water_vapour",
    "watervapor": "water_vapour",
    "wv": "water_vapour",
    "cirrus": "cirrus",
    "swir1": "swir_1",
    "swir16": "swir_1",
    "swir2": "swir_2",
    "swir22": "swir_2",
    "rededge1": "red_edge_1",
    "re1": "red_edge_1",
    "vre1": "red_edge_1",
    "rededge071": "red_edge_1",
    "rededge2": "red_edge_2",
    "re2": "red_edge_2",
    "vre2": "red_edge_2",
    "rededge075": "red_edge_2",
    "rededge3": "red_edge_3",
    "re3": "red_edge_3",
    "vre3": "red_edge_3",
    "rededge078": "red_edge_3",
}

# Sentinel-2 MSI band codes. A bare "B5" is read as Sentinel-2 (red edge 1); Landsat codes must say
# so ("SR_B5", "landsat_b5", "oli_b5") because the same number means another band there.
_SENTINEL2 = {
    "1": "coastal",
    "2": "blue",
    "3": "green",
    "4": "red",
    "5": "red_edge_1",
    "6": "red_edge_2",
    "7": "red_edge_3",
    "8": "nir",
    "8a": "nir_narrow",
    "9": "water_vapour",
    "10": "cirrus",
    "11": "swir_1",
    "12": "swir_2",
}
# Landsat 8/9 OLI Collection 2 surface reflectance (SR_B1..SR_B7) and HLS L30 (B01..B07, B05 = NIR_NARROW).
_LANDSAT_OLI = {
    "1": "coastal",
    "2": "blue",
    "3": "green",
    "4": "red",
    "5": "nir_narrow",
    "6": "swir_1",
    "7": "swir_2",
}
_S2_CODE = re.compile(r"^(?:s2_?|sentinel2_?)?b0*(\d{1,2}a?)$")
_OLI_CODE = re.compile(r"^(?:sr_?|landsat_?|oli_?|l30_?|l8_?|l9_?)b0*(\d)$")
_GENERIC = re.compile(r"^band_(\d+)$")


def _normalise(name: str) -> str:
    text = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return re.sub(r"_+", "_", text).strip("_")


def canonical_band_name(name: str) -> str:
    """The canonical name of a band description or user token; unknown names stay as normalised text."""
    text = _normalise(name)
    squashed = text.replace("_", "")
    if squashed in _ALIASES:
        return _ALIASES[squashed]
    match = _OLI_CODE.match(text) or _OLI_CODE.match(squashed)
    if match and match.group(1) in _LANDSAT_OLI:
        return _LANDSAT_OLI[match.group(1)]
    match = _S2_CODE.match(squashed)
    if match and match.group(1) in _SENTINEL2:
        return _SENTINEL2[match.group(1)]
    return text


def is_generic_band_name(name: str) -> bool:
    """True for `band_<i>`, the name given to a band without a description (it carries no meaning)."""
    return bool(_GENERIC.match(name))
