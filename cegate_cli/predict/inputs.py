"""What `predict` maps: the scene files that files, folders and glob patterns name.

Our own outputs (masks, confidence and probability rasters, scratch files) are never inputs, so
an output folder inside the input folder, or named among the inputs, is harmless.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from cegate_cli.data.raster import not_a_file_reason
from cegate_cli.data.stac import looks_like_item
from cegate_cli.errors import DataError, DataFileNotFoundError
from cegate_cli.predict.outputs import output_markers

RASTER_SUFFIXES = (".tif", ".tiff")
OUTPUT_MARKERS = output_markers()  # our own outputs (and scratch files), never inputs


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files, folders (their *.tif/*.tiff and STAC item *.json, not recursive) and glob patterns
    -> sorted unique files.

    Our own outputs (*.mask.tif, *.confidence.tif) found in folders or globs are left out, so an
    output folder inside the input folder is harmless, and so is a folder of nothing but outputs
    named among other inputs (what the shell makes of `scenes/*` with `-o scenes/out`). A file
    named explicitly is always kept.
    """
    if not inputs:
        raise DataFileNotFoundError("no input scenes given; name files, folders or glob patterns")
    found: list[Path] = []
    outputs_only: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_file():
            matches = [path]
        elif path.is_dir():
            matches = sorted(p for p in path.iterdir() if _is_scene(p) and not _is_unlisted_dir(p))
            if not matches and _holds_outputs(path):
                outputs_only.append(path)
            elif not matches:
                raise DataFileNotFoundError(f"{path}: folder holds no .tif/.tiff scenes or STAC item .json files{_images_folder_hint(path)}")
        elif any(char in str(entry) for char in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(entry), recursive=True) if _is_scene(Path(p)) and not _is_unlisted_dir(Path(p)))
            if not matches:
                raise DataFileNotFoundError(f"{entry}: pattern matches no .tif/.tiff scenes or STAC item .json files")
        elif os.path.lexists(path):
            # A FIFO, a socket or a broken or looping symlink: say what it is, not "no such file".
            raise DataError(f"{entry}: {not_a_file_reason(path) or 'cannot be read'}")
        else:
            raise DataFileNotFoundError(f"{entry}: no such file or folder")
        found.extend(matches)
    if not found and outputs_only:
        raise DataFileNotFoundError(
            f"{outputs_only[0]}: folder holds no .tif/.tiff scenes, only cegate's own outputs (*.mask.tif and the like), "
            "which are never read as scenes; name the folder of the scenes to map"
        )
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(Path(os.path.realpath(path)), path)  # Path.resolve() raises on a symlink loop
    return list(unique.values())


def _is_scene(path: Path) -> bool:
    name = path.name.lower()
    if looks_like_item(path):
        return True
    return name.endswith(RASTER_SUFFIXES) and not any(name.endswith(m + s) for m in OUTPUT_MARKERS for s in RASTER_SUFFIXES)


def _holds_outputs(folder: Path) -> bool:
    """Whether a folder holds cegate's own rasters (it is an -o folder)."""
    try:
        return any(p.is_file() and not _is_scene(p) and p.name.lower().endswith(RASTER_SUFFIXES) for p in folder.iterdir())
    except OSError:
        return False


def _images_folder_hint(folder: Path) -> str:
    """For a folder without scenes whose images/ has some (a labeled folder): name that folder."""
    images = folder / "images"
    try:
        has_scenes = images.is_dir() and any(_is_scene(p) and not _is_unlisted_dir(p) for p in images.iterdir())
    except OSError:
        return ""
    return f"; did you mean {images}?" if has_scenes else ""


def _is_unlisted_dir(path: Path) -> bool:
    """A real sub-folder, or a hidden non-file (our temporaries), found while listing a folder or
    glob: left out. Other .tif names that are not files (a FIFO, a broken or looping symlink) are
    kept, so each fails alone saying what it is instead of vanishing from the batch."""
    return path.is_dir() or (path.name.startswith(".") and not path.is_file())
