"""Which raster bands a run uses, by canonical name, and where they sit in each file.

Band order differs between products (a Sentinel-2 stack, an RGBN aerial tile, an HLS chip), so a run
remembers its bands by canonical name (`red`, `nir`, ...) plus the 1-based indexes it read them from.
Every later raster (a target scene, a scene to predict) is matched by name when it has band
descriptions, and by index only when it has none. The backbone uses the same names to map its
pretrained patch-embedding channels onto the user's bands.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from cegate_cli.errors import DataError, InputError

# Canonical names; "nir" is the broad NIR (Sentinel-2 B08, ~842 nm, STAC common name "nir"),
# "nir_narrow" the narrow one (Sentinel-2 B8A, Landsat 8/9 OLI B5, STAC "nir08"; HLS and Prithvi
# call it NIR_NARROW). They are different bands and are never silently swapped.
CANONICAL_BANDS = (
    "coastal", "blue", "green", "red", "red_edge_1", "red_edge_2", "red_edge_3",
    "nir", "nir_narrow", "water_vapour", "cirrus", "swir_1", "swir_2",
)

# Keys are squashed (lower case, no spaces, underscores or hyphens) so "SWIR 1", "swir-1",
# "swir_1" and "SWIR1" all meet the same entry.
_ALIASES: dict[str, str] = {
    "b": "blue", "blue": "blue",
    "g": "green", "green": "green",
    "r": "red", "red": "red",
    "coastal": "coastal", "coastalaerosol": "coastal", "aerosol": "coastal", "ultrablue": "coastal",
    "nir": "nir", "nirbroad": "nir", "broadnir": "nir", "nearinfrared": "nir", "nir1": "nir",
    "nirnarrow": "nir_narrow", "narrownir": "nir_narrow", "nir08": "nir_narrow", "nirn": "nir_narrow",
    "nir09": "water_vapour", "watervapour": "water_vapour", "watervapor": "water_vapour", "wv": "water_vapour",
    "cirrus": "cirrus",
    "swir1": "swir_1", "swir16": "swir_1",
    "swir2": "swir_2", "swir22": "swir_2",
    "rededge1": "red_edge_1", "re1": "red_edge_1", "vre1": "red_edge_1", "rededge071": "red_edge_1",
    "rededge2": "red_edge_2", "re2": "red_edge_2", "vre2": "red_edge_2", "rededge075": "red_edge_2",
    "rededge3": "red_edge_3", "re3": "red_edge_3", "vre3": "red_edge_3", "rededge078": "red_edge_3",
}

# Sentinel-2 MSI band codes. A bare "B5" is read as Sentinel-2 (red edge 1); Landsat codes must say
# so ("SR_B5", "landsat_b5", "oli_b5") because the same number means another band there.
_SENTINEL2 = {
    "1": "coastal", "2": "blue", "3": "green", "4": "red", "5": "red_edge_1", "6": "red_edge_2",
    "7": "red_edge_3", "8": "nir", "8a": "nir_narrow", "9": "water_vapour", "10": "cirrus",
    "11": "swir_1", "12": "swir_2",
}
# Landsat 8/9 OLI Collection 2 surface reflectance (SR_B1..SR_B7) and HLS L30 (B01..B07, B05 = NIR_NARROW).
_LANDSAT_OLI = {
    "1": "coastal", "2": "blue", "3": "green", "4": "red", "5": "nir_narrow", "6": "swir_1", "7": "swir_2",
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


def band_names_of(path: Path) -> tuple[str, ...]:
    """Canonical names of every band of a raster: its descriptions, `band_<i>` where there is none."""
    with _open(path) as ds:
        return _names_from_descriptions(ds.descriptions)


def _names_from_descriptions(descriptions: Sequence[str | None]) -> tuple[str, ...]:
    return tuple(
        canonical_band_name(d) if d and d.strip() else f"band_{i}" for i, d in enumerate(descriptions, start=1)
    )


def _open(path: Path) -> Any:
    from cegate_cli.data.raster import open_raster  # one way to open, one set of messages

    return open_raster(path)


def _describe(names: Sequence[str]) -> str:
    return "[" + ", ".join(f"{i}:{n}" for i, n in enumerate(names, start=1)) + "]"


@dataclass(frozen=True)
class BandChoice:
    """The bands a run reads: 1-based indexes in the file it was resolved on, and canonical names.

    Stored in run.json; names are what later rasters are matched by.
    """

    indexes: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.indexes) != len(self.names) or not self.indexes:
            raise InputError(f"a band choice needs as many names as indexes, got {self.indexes} and {self.names}")

    @property
    def count(self) -> int:
        return len(self.indexes)

    @property
    def named(self) -> bool:
        """True when at least one band has a real name (so other rasters can be matched by name)."""
        return any(not is_generic_band_name(n) for n in self.names)

    def to_dict(self) -> dict[str, Any]:
        return {"indexes": list(self.indexes), "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BandChoice:
        return cls(tuple(int(i) for i in data["indexes"]), tuple(str(n) for n in data["names"]))


def parse_band_spec(spec: str) -> tuple[int | str, ...]:
    """"1,2,3" or "red, green,nir" -> tokens (ints are 1-based indexes, strings canonical names)."""
    tokens: list[int | str] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise InputError(f"--bands {spec!r}: empty entry; write e.g. '1,2,3,4' or 'red,green,blue,nir'")
        if part.isdigit():
            if int(part) < 1:
                raise InputError(f"--bands {spec!r}: band numbers start at 1, got {part}")
            tokens.append(int(part))
        else:
            tokens.append(canonical_band_name(part))
    return tuple(tokens)


def resolve_bands(spec: str | None, path: Path) -> BandChoice:
    """Turn a `--bands` spec into indexes and names for the raster at `path` (None = all bands)."""
    with _open(path) as ds:
        names = _names_from_descriptions(ds.descriptions)
    if spec is None or not spec.strip():
        return BandChoice(tuple(range(1, len(names) + 1)), names)
    indexes: list[int] = []
    missing: list[str] = []
    for token in parse_band_spec(spec):
        if isinstance(token, int):
            if token > len(names):
                missing.append(str(token))
                continue
            indexes.append(token)
        else:
            hits = [i for i, n in enumerate(names, start=1) if n == token]
            if len(hits) > 1:
                raise DataError(
                    f"{path}: band {token!r} appears {len(hits)} times {_describe(names)}; choose by number instead"
                )
            if not hits:
                missing.append(token)
                continue
            indexes.append(hits[0])
    if missing:
        raise DataError(
            f"{path}: no band {', '.join(missing)}; the file has {_describe(names)}. "
            "Name bands by number or by these names with --bands."
        )
    if len(set(indexes)) != len(indexes):
        raise InputError(f"--bands {spec!r} names the same band twice in {path} {_describe(names)}")
    return BandChoice(tuple(indexes), tuple(names[i - 1] for i in indexes))


def match_bands(choice: BandChoice, path: Path) -> tuple[int, ...]:
    """The 1-based band indexes of `path` that hold the run's bands, in the run's order.

    By name when both the run and the raster have band descriptions (so a scene stacked in another
    order still works); by the run's own indexes when either side has no names and the raster has
    enough bands.
    """
    with _open(path) as ds:
        descriptions = ds.descriptions
        count = ds.count
    names = _names_from_descriptions(descriptions)
    raster_named = any(not is_generic_band_name(n) for n in names)
    if choice.named and raster_named:
        found: list[int] = []
        for wanted, index in zip(choice.names, choice.indexes):
            hits = [i for i, n in enumerate(names, start=1) if n == wanted]
            if len(hits) == 1:
                found.append(hits[0])
            elif not hits and is_generic_band_name(wanted) and index <= count:
                found.append(index)  # the run had no name for this band either: position is all we know
            else:
                break
        else:
            return tuple(found)
    elif max(choice.indexes) <= count:
        return choice.indexes
    raise DataError(
        f"scene {path} has bands {_describe(names)}, the run needs {list(choice.names)} "
        f"(read from bands {list(choice.indexes)} of the training images). Give the scene band "
        "descriptions with these names, or stack its bands in the training order."
    )


def match_all(choice: BandChoice, paths: Sequence[Path]) -> tuple[tuple[tuple[int, ...], ...], list[str]]:
    """`match_bands` for every path: the indexes of those that match and one line per one that does
    not, so callers can report every mismatch in a single error."""
    per_image: list[tuple[int, ...]] = []
    problems: list[str] = []
    for path in paths:
        try:
            per_image.append(match_bands(choice, path))
        except DataError as exc:
            problems.append(str(exc))
    return tuple(per_image), problems


def bands_for_images(spec: str | None, paths: Sequence[Path]) -> tuple[BandChoice, tuple[tuple[int, ...], ...]]:
    """Resolve `spec` on the first image and match every image; all mismatches in one error.

    Returns the choice and, per image, the indexes to read.
    """
    if not paths:
        raise InputError("no images to choose bands from")
    choice = resolve_bands(spec, paths[0])
    per_image, problems = match_all(choice, paths)
    if problems:
        raise DataError(f"{len(problems)} image(s) do not hold the chosen bands:\n" + "\n".join(f"  - {p}" for p in problems))
    return choice, per_image
