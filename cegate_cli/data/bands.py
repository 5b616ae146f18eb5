"""Which raster bands a run uses, by canonical name, and where they sit in each file.

Band order differs between products (a Sentinel-2 stack, an RGBN aerial tile, an HLS chip), so a run
remembers its bands by canonical name (`red`, `nir`, ...) plus the 1-based indexes it read them from.
Every later raster (a target scene, a scene to predict) is matched by name when it has band
descriptions, and by index only when it has none. The backbone uses the same names to map its
pretrained patch-embedding channels onto the user's bands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cegate_cli.data.band_names import canonical_band_name, is_generic_band_name
from cegate_cli.errors import DataError, InputError


def band_names_of(path: Path) -> tuple[str, ...]:
    """Canonical names of every band of a raster: its descriptions, `band_<i>` where there is none."""
    with _open(path) as ds:
        return _names_from_descriptions(ds.descriptions)


def _names_from_descriptions(descriptions: Sequence[str | None]) -> tuple[str, ...]:
    return tuple(canonical_band_name(d) if d and d.strip() else f"band_{i}" for i, d in enumerate(descriptions, start=1))


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


def parse_band_spec(spec: str) -> tuple[int | str | tuple[str, int], ...]:
    """ "1,2,3", "red, green,nir" or "red=1,green=2,blue=3,nir=4" -> tokens: ints are 1-based
    indexes, strings canonical names, (name, index) pairs name a band the files leave unnamed."""
    tokens: list[int | str | tuple[str, int]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise InputError(f"--bands {spec!r}: empty entry; write e.g. '1,2,3,4' or 'red,green,blue,nir'")
        if "=" in part:
            name, _, number = (x.strip() for x in part.partition("="))
            if not name or not number.isdigit() or int(number) < 1:
                raise InputError(f"--bands {spec!r}: {part!r} is not NAME=NUMBER; write e.g. 'red=1,green=2,blue=3,nir=4'")
            tokens.append((canonical_band_name(name), int(number)))
        elif part.isdigit():
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
    chosen: list[str] = []
    missing: list[str] = []
    for token in parse_band_spec(spec):
        if isinstance(token, tuple):
            name, index = token
            if index > len(names):
                missing.append(str(index))
                continue
            described = names[index - 1]
            if not is_generic_band_name(described) and described != name:
                raise DataError(
                    f"{path}: band {index} is described as {described!r}, not {name!r}; name it {described!r} "
                    f"or by number ({index}) in --bands (NAME=NUMBER names bands the files leave unnamed)"
                )
            indexes.append(index)
            chosen.append(name)
        elif isinstance(token, int):
            if token > len(names):
                missing.append(str(token))
                continue
            indexes.append(token)
            chosen.append(names[token - 1])
        else:
            hits = [i for i, n in enumerate(names, start=1) if n == token]
            if len(hits) > 1:
                raise DataError(f"{path}: band {token!r} appears {len(hits)} times {_describe(names)}; choose by number instead")
            if not hits:
                missing.append(token)
                continue
            indexes.append(hits[0])
            chosen.append(token)
    if missing:
        unnamed = all(is_generic_band_name(n) for n in names)
        fix = (
            "Its bands have no descriptions: choose them by number, or name them by number, e.g. --bands red=1,green=2,blue=3,nir=4."
            if unnamed
            else "Name bands by number or by these names with --bands."
        )
        raise DataError(f"{path}: no band {', '.join(missing)}; the file has {_describe(names)}. {fix}")
    if len(set(indexes)) != len(indexes):
        raise InputError(f"--bands {spec!r} names the same band twice in {path} {_describe(names)}")
    if len(set(chosen)) != len(chosen):
        raise InputError(f"--bands {spec!r} gives the same name to two bands")
    return BandChoice(tuple(indexes), tuple(chosen))


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
            elif not hits and index <= count and (is_generic_band_name(wanted) or is_generic_band_name(names[index - 1])):
                found.append(index)  # one side has no name for this band: position is all we know
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
