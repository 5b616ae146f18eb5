"""What mapping a batch of scenes will cost, said before `predict` starts; a scene too large refused.

A sparse file can declare 100000 x 100000 px and so start a job of many hours without a word, so
`predict` first opens every scene's header (no pixel is read) and refuses a scene beyond MAX_SCENE_PIXELS
with the limit's name (`survey`). Once the model is loaded it says each scene's size and tile
count, and after the first batch of tiles an estimate of the time left, from the rate measured on
that batch (`announce`). It is said to be an estimate: the first batch carries the model's
warm-up, and scenes that are mostly nodata go faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cegate_cli.data.raster import open_raster
from cegate_cli.errors import CegateError, DataError
from cegate_cli.infra.capacity import MAX_SCENE_PIXELS, size_words
from cegate_cli.infra.progress import BatchProgress

ESTIMATE_FROM_SECONDS = 20.0
"""The time estimate is said only for work expected to last at least this long."""


@dataclass(frozen=True)
class SceneSize:
    source: Path
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def survey(sources: Sequence[Path]) -> list[SceneSize]:
    """Every scene's size from its header; a scene over MAX_SCENE_PIXELS stops the batch before
    the run is loaded. A scene that cannot be opened is left out here: it fails alone, with its
    own message, when its turn comes."""
    sizes = []
    for source in sources:
        try:
            with open_raster(Path(source)) as dataset:
                size = SceneSize(Path(source), dataset.width, dataset.height)
        except CegateError:
            continue
        if size.pixels > MAX_SCENE_PIXELS:
            raise DataError(
                f"{source}: {size.width:,} x {size.height:,} px is {size.pixels / 1e9:,.1f} billion pixels, more than the "
                f"{MAX_SCENE_PIXELS / 1e9:.1f} billion one scene may have (MAX_SCENE_PIXELS; its mask alone would be "
                f"{size_words(size.pixels)}); cut it into parts and map those, e.g. "
                f"gdal_retile.py -ps 20000 20000 -targetDir parts {Path(source).name}"
            )
        sizes.append(size)
    return sizes


def announce(
    sizes: Sequence[SceneSize],
    tiles_of: Callable[[SceneSize], int],
    tile: int,
    progress: BatchProgress | None,
) -> BatchProgress | None:
    """Say what the scenes will cost (through `progress.say`, where the display has one) and
    return the progress to map with: `progress` itself, wrapped to say the time estimate once
    the first batch of tiles is done."""
    say = getattr(progress, "say", None)
    if progress is None or say is None or not sizes:
        return progress
    tiles = [tiles_of(size) for size in sizes]
    total = sum(tiles)
    if len(sizes) == 1:  # several scenes get one line: each scene's own line follows as it starts
        (size,) = sizes
        of = f" of {tile} px" if max(size.width, size.height) >= tile else ""
        say(f"{size.source.name}: {_size(size)}, {_tiles(total)}{of} to map")
    else:
        largest = max(sizes, key=lambda s: s.pixels)
        pixels = sum(s.pixels for s in sizes)
        say(f"{len(sizes)} scenes: {_pixels(pixels)}, {_tiles(total)} of up to {tile} px to map; the largest, {largest.source.name}: {_size(largest)}")
    return RateEstimate(progress, total, say)


def _tiles(count: int) -> str:
    return f"{count:,} tile" if count == 1 else f"{count:,} tiles"


def _pixels(count: int) -> str:
    return f"{count:,} px" if count < 1_000_000 else f"{count / 1e6:,.1f} million px"


def _size(size: SceneSize) -> str:
    if size.pixels < 1_000_000:
        return f"{size.width:,} x {size.height:,} px"
    return f"{size.width:,} x {size.height:,} px ({_pixels(size.pixels)})"


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    if whole < 90:
        return f"{whole} s"
    if whole < 3600:
        return f"{round(whole / 60)} min"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class RateEstimate(BatchProgress):
    """Passes everything on to the display it wraps; after the first batch of tiles, says once how
    long the tiles left will take at the rate measured on that batch."""

    def __init__(self, inner: BatchProgress, total_tiles: int, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.total = total_tiles
        self.say = say
        self.clock = clock
        self.started: float | None = None
        self.done = 0
        self.said = False

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def phase_started(self, name: str) -> None:
        self.inner.phase_started(name)

    def phase_finished(self, name: str, seconds: float) -> None:
        self.inner.phase_finished(name, seconds)

    def phase_abandoned(self, name: str) -> None:
        self.inner.phase_abandoned(name)

    def file_started(self, source: Path, index: int, total_files: int, tiles: int) -> None:
        if self.started is None and tiles > 0:
            self.started = self.clock()
        self.inner.file_started(source, index, total_files, tiles)

    def tiles_done(self, count: int) -> None:
        self.inner.tiles_done(count)
        self.done += count
        if self.said or self.started is None:
            return
        self.said = True
        seconds = self.clock() - self.started
        left = self.total - self.done
        if seconds <= 0 or left <= 0:
            return
        rate = self.done / seconds
        if left / rate >= ESTIMATE_FROM_SECONDS:
            self.say(
                f"estimate: about {_duration(left / rate)} for the {_tiles(left)} left, at {rate:.2g} tiles/s "
                f"measured on the first batch (a rough figure: that batch includes the model's warm-up)"
            )

    def file_finished(self, outcome: Any) -> None:
        self.inner.file_finished(outcome)
