"""How much one forward pass may hold: the one rule bounding crop, tile and batch sizes; and the
bounds on what an input raster may ask of memory (its blocks) and of time (a scene's pixels).

A side and a batch count multiply into memory before the model runs, so training (`TrainConfig`)
and mapping (`MapOptions`) check their sizes here, before anything is read or written; the
message says what the limit means in memory and what this machine has. Input rasters are held
to MAX_BLOCK_BYTES where they are opened (data/blocks.py) and scenes to MAX_SCENE_PIXELS before
`predict` starts (scene_cost.py).
"""

from __future__ import annotations

import os

MAX_SIDE = 2048
"""Pixels a side of one crop or tile; the model's memory grows with the square of the tokens."""
MAX_BATCH = 1024
"""Crops or tiles in one pass."""
MAX_PASS_PIXELS = 1 << 26
"""Pixels of one pass, side x side x batch; the model's activations are many times the input."""
BYTES_PER_VALUE = 4
MAX_BLOCK_BYTES = 1 << 28
"""Bytes of one block (strip or tile) of an input raster, uncompressed. GDAL inflates the whole
block for any window that touches it, so a file stored as one compressed strip (20000 x 20000 x
4 at 16 bits: 3.2 GB inflated from 3 MB on disk) costs its whole image in memory at every read."""
MAX_SCENE_PIXELS = 1 << 32
"""Pixels of one scene `predict` maps (65,536 x 65,536): beyond it the mask alone is over 4 GiB
and a CPU maps it for days; such a scene is cut into parts first (gdal_retile.py, gdal_translate -srcwin)."""


def check_pass(*, side: int, side_flag: str, batch: int, batch_flag: str, unit: str) -> None:
    """Refuse a pass of `batch` squares of `side` pixels (a "crop" or "tile", the `unit`) beyond
    the limits above; sides and counts below 1 are left to the caller's own message."""
    from cegate_cli.errors import InputError

    if side > MAX_SIDE:
        raise InputError(
            f"{side_flag} {side}: at most {MAX_SIDE} pixels a side; one {unit} of {side} px is "
            f"{_gib(side * side * BYTES_PER_VALUE)} per band before the model runs ({machine_memory()})"
        )
    if batch > MAX_BATCH:
        raise InputError(f"{batch_flag} {batch}: at most {MAX_BATCH} {unit}s per pass (4 to 64 is usual; {machine_memory()})")
    if side >= 1 and batch >= 1 and side * side * batch > MAX_PASS_PIXELS:
        raise InputError(
            f"{batch_flag} {batch} with {side_flag} {side}: {side * side * batch / 1e6:,.0f} million pixels per pass, more than "
            f"the {MAX_PASS_PIXELS / 1e6:.0f} million one pass may hold ({_gib(MAX_PASS_PIXELS * BYTES_PER_VALUE)} per band "
            f"before the model's activations; {machine_memory()}); lower one of them"
        )


def machine_memory() -> str:
    """ "this machine has 15.6 GiB of memory", or words saying it is unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return "this machine's memory is unknown"
    return f"this machine has {_gib(total)} of memory"


def size_words(count: int) -> str:
    """A byte count as a user reads it: "3.0 GiB", "288 MiB"."""
    return _gib(count)


def _gib(count: int) -> str:
    return f"{count / (1 << 30):,.1f} GiB" if count >= 1 << 30 else f"{count / (1 << 20):,.0f} MiB"
