"""The unlabeled target folder: its images, the bands to read from each, and its statistics.

Target images may differ from the source in size, pixel size, CRS and value range; what must
match is the band set, found by the run's band choice (names where the files have them). Every
image that lacks a band is listed in one error, before anything is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cegate_cli.data.bands import BandChoice, match_all
from cegate_cli.data.folder import discover_images
from cegate_cli.data.stats import BandStats, compute_band_stats
from cegate_cli.errors import DataError, InputError


@dataclass(frozen=True)
class TargetFolder:
    root: Path
    images: tuple[Path, ...]
    band_indexes: tuple[tuple[int, ...], ...]
    """Per image, the 1-based bands holding the run's bands in the run's order."""


def discover_target(root: Path, choice: BandChoice, *, source: Path | None = None) -> TargetFolder:
    """Images of `root` (`root/*.tif` or `root/images/*.tif`) matched to `choice`."""
    root = Path(root)
    if source is not None and root.resolve() == Path(source).resolve():
        raise InputError(f"--target {root} is the labeled source folder itself; give a folder of target-domain images")
    images = discover_images(root)
    indexes, problems = match_all(choice, images)
    if problems:
        raise DataError(
            f"{len(problems)} of {len(images)} target image(s) in {root} do not hold the run's bands "
            f"{list(choice.names)}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return TargetFolder(root, images, indexes)


def target_stats(folder: TargetFolder, choice: BandChoice, seed: int) -> BandStats:
    """Per-band mean/std over the target's valid pixels (sampled windows, as for the source)."""
    return compute_band_stats(list(folder.images), list(folder.band_indexes), choice.names, seed=seed)
