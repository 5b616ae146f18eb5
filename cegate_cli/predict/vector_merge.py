"""One polygon layer for a whole batch (`--vector-merge`): every scene's polygons with a `scene` column.

The merged layer is made at the end of the batch from the scenes' own polygon files, which are
written (and kept, and skipped on a rerun) as without the option. So a resumed batch merges the
scenes mapped before and now alike, and nothing about the merge is held in memory across scenes:
each file is read back in batches and streamed into the merged file's sink.

Where it is written: `OUT/polygons<suffix>` (outputs.py's `merged_name`), atomically, with its
QGIS style beside it (`polygons.qml`, the mask's colours). When it is written:

- only when every scene of the batch mapped: a batch with failed scenes leaves it unwritten (one
  line says so), so it never holds part of a batch; the rerun that maps the rest writes it;
- an existing one is kept unless `--overwrite`, like every output: a rerun whose scenes are all
  skipped keeps it, and one that would map scenes into a folder that has one is refused before
  anything is mapped (the kept file would then miss the new scenes; remove it, and the rerun
  writes it again from the scenes' files, or redo everything with `--overwrite`).

CRS: a GeoJSON layer is EPSG:4326 like the scenes' files. A GeoPackage layer has one CRS: the
first scene's (in input order); polygons of scenes in another CRS are reprojected into it, vertex
by vertex (their outlines already have a vertex at every pixel corner), and one line names them.
`area_m2` is each polygon's area as measured on its own scene, unchanged by the reprojection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pyogrio
import shapely
from pyproj import CRS, Transformer

from cegate_cli.data.classes import ClassTable
from cegate_cli.errors import DataError, InputError
from cegate_cli.predict.legend import polygon_qml, write_polygon_style
from cegate_cli.predict.outputs import MERGED_STEM, VectorFormat, vector_format
from cegate_cli.predict.vector_io import FeatureBatch

MergeStatus = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class MergedLayer:
    """What the merge wrote: how many scenes and polygons, in which CRS, which scenes moved CRS."""

    path: Path
    fmt: str
    scenes: int
    features: int
    crs: str
    reprojected: tuple[str, ...]
    seconds: float

    @property
    def note(self) -> str | None:
        """One line when scenes were reprojected, else None."""
        if not self.reprojected:
            return None
        shown = ", ".join(self.reprojected[:3]) + (f" and {len(self.reprojected) - 3} more" if len(self.reprojected) > 3 else "")
        return f"{self.path.name}: {len(self.reprojected)} of {self.scenes} scenes reprojected to {self.crs}, the first scene's CRS ({shown})"


@dataclass(frozen=True)
class MergeOutcome:
    """The merged layer's fate in a batch; `message` says why it was kept, not written, or failed."""

    path: Path
    status: MergeStatus
    layer: MergedLayer | None = None
    message: str | None = None


def merged_path(out_dir: Path, fmt: str) -> Path:
    return Path(out_dir) / vector_format(fmt).merged_name


def check_merge(fmt: str, stems: Sequence[str], out_dir: Path, pending: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before anything is mapped, a merge that could not end consistent.

    `stems` are the batch's scene names; `pending` the scenes whose outputs are not all there
    (what the batch will map or vectorise).
    """
    form = vector_format(fmt)
    if MERGED_STEM in stems:
        raise InputError(
            f"a scene named {MERGED_STEM} would write its own polygons to {form.merged_name}, the name --vector-merge "
            "gives the whole batch's layer; rename that scene or leave out --vector-merge"
        )
    path = merged_path(out_dir, fmt)
    if overwrite or not path.exists() or not pending:
        return
    names = ", ".join(p.name for p in pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
    raise InputError(
        f"{path} exists and would no longer hold the whole batch: {len(pending)} scene(s) are still to map ({names}); "
        f"remove it (it is made again from every scene's polygons at the end) or use --overwrite (maps every scene again)"
    )


def merge_polygons(parts: Sequence[tuple[str, Path]], out_path: Path, *, fmt: str, class_table: ClassTable) -> MergedLayer:
    """Write the polygons of `parts` (scene name, its polygon file) as one layer with a `scene`
    attribute, and its QGIS style beside it; nothing under `out_path` unless it completes."""
    started = time.perf_counter()
    form = vector_format(fmt)
    if not parts:
        raise ValueError("merge_polygons: no polygon files given")
    try:
        sources = [(scene, path, *form.read(path)) for scene, path in parts]
        target = _target_crs(form, [(path, crs) for _scene, path, crs, _batches in sources])
        reprojected: list[str] = []
        features = 0
        with form.open_sink(out_path, target, style=polygon_qml(class_table)) as sink:
            sink.write(FeatureBatch.empty(sources[0][0]))  # the layer gets its columns, `scene` too, even if no polygon follows
            for scene, _path, crs, batches in sources:
                moved = not form.lonlat and crs is not None and not crs.equals(target)
                if moved:
                    reprojected.append(scene)
                for batch in _reprojected(batches, crs, target) if moved else batches:
                    sink.write(replace(batch, scene=scene))
                    features += len(batch)
            write_polygon_style(out_path, class_table)  # before the layer takes its name, like the mask's legend
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:  # GDAL's words, on the merged file
        raise DataError(f"{out_path}: merging the scenes' polygons failed ({exc})") from exc
    return MergedLayer(out_path, fmt, len(parts), features, _crs_name(target), tuple(reprojected), time.perf_counter() - started)


def _target_crs(form: VectorFormat, sources: list[tuple[Path, CRS | None]]) -> CRS:
    """EPSG:4326 for a longitude/latitude format, else the first scene's CRS."""
    if form.lonlat:
        return CRS.from_epsg(4326)
    for _path, crs in sources:
        if crs is not None:
            return crs
    raise InputError(f"{sources[0][0]}: polygons without a CRS cannot be merged into a {form.label} layer")


def _reprojected(batches: Iterator[FeatureBatch], source: CRS, target: CRS) -> Iterator[FeatureBatch]:
    transformer = Transformer.from_crs(source, target, always_xy=True)

    def move(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    for batch in batches:
        yield replace(batch, geometries=shapely.transform(batch.geometries, move))


def _crs_name(crs: CRS) -> str:
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else crs.name
