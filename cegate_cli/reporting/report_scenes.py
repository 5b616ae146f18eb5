"""Which scenes the HTML report shows, their predicted masks and labels, as pictures.

The user names scenes the way `predict` takes them (files, folders, globs, STAC items) or a
labeled folder (images/ and masks/, as `evaluate` takes it), whose masks are then shown beside
the prediction. Masks already made by `cegate predict` can be given (`masks`, looked up as
<name>.mask.tif); the scenes without one are predicted with the run into a scratch folder that
is deleted afterwards, so the report never writes beside the user's data.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cegate_cli.data.classes import ClassTable
from cegate_cli.data.stac import scene_name
from cegate_cli.errors import CegateError, DataFileNotFoundError
from cegate_cli.reporting.preview import Picture, image_picture, mask_picture

if TYPE_CHECKING:
    from cegate_cli.pipelines.inference import MapOptions


@dataclass(frozen=True)
class ScenePreview:
    """One scene's pictures (input, prediction, label where there is one) or why there are none."""

    source: Path
    name: str
    pictures: tuple[Picture, ...] = ()
    problem: str | None = None


def choose_scenes(inputs: Sequence[str | Path], limit: int) -> list[tuple[Path, Path | None]]:
    """The first `limit` scenes of `inputs`, each with its label mask where a labeled folder gives one."""
    from cegate_cli.predict.inputs import expand_inputs

    chosen: list[tuple[Path, Path | None]] = []
    for entry in inputs:
        folder = Path(entry)
        if folder.is_dir() and (folder / "images").is_dir():
            for image in expand_inputs([folder / "images"]):
                chosen.append((image, _label_of(folder / "masks", scene_name(image))))
        else:
            chosen.extend((image, None) for image in expand_inputs([entry]))
    unique = list(dict.fromkeys(chosen))
    return unique[:limit]


def _label_of(masks: Path, name: str) -> Path | None:
    for suffix in (".tif", ".tiff"):
        candidate = masks / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def scene_previews(
    run_dir: Path,
    scenes: Sequence[tuple[Path, Path | None]],
    classes: ClassTable,
    *,
    size: int,
    masks: Path | None = None,
    map_options: MapOptions | None = None,
    progress: Any = None,
) -> list[ScenePreview]:
    """Pictures of each scene; a scene that cannot be shown carries its one-line reason instead."""
    if masks is not None and not Path(masks).is_dir():
        raise DataFileNotFoundError(f"--masks {masks}: no such folder; give the -o folder of `cegate predict`")
    given = {source: Path(masks) / f"{scene_name(source)}.mask.tif" for source, _ in scenes} if masks is not None else {}
    missing = [source for source, _ in scenes if not (source in given and given[source].is_file())]
    with tempfile.TemporaryDirectory(prefix="cegate-report-") as scratch:
        predicted, failures = _predict(run_dir, missing, Path(scratch), map_options, progress) if missing else ({}, {})
        return [
            _one(source, label, given.get(source) if source not in predicted else predicted[source], failures.get(source), classes, size)
            for source, label in scenes
        ]


def _predict(run_dir: Path, sources: list[Path], scratch: Path, map_options: MapOptions | None, progress: Any) -> tuple[dict[Path, Path], dict[Path, str]]:
    from cegate_cli.pipelines.inference import MapOptions, predict_run
    from cegate_cli.predict.vector_options import VectorOptions

    summary = predict_run(run_dir, sources, scratch, options=map_options or MapOptions(), vectors=VectorOptions(fmt=None), overwrite=True, progress=progress)
    predicted = {outcome.source: outcome.outputs.mask for outcome in summary.done}
    failures = {outcome.source: outcome.message or "prediction failed" for outcome in summary.failed}
    return predicted, failures


def _one(source: Path, label: Path | None, mask: Path | None, failure: str | None, classes: ClassTable, size: int) -> ScenePreview:
    name = scene_name(source)
    if failure is not None or mask is None:
        return ScenePreview(source, name, problem=failure or f"{source}: no predicted mask")
    try:
        image = image_picture(source, size)
        shape = image.pixels.shape[:2]
        pictures = [image, mask_picture(mask, size, classes, "prediction", shape)]
        if label is not None:
            pictures.append(mask_picture(label, size, classes, f"label ({label.name})", shape))
    except CegateError as exc:
        return ScenePreview(source, name, problem=str(exc))
    return ScenePreview(source, name, tuple(pictures))
