"""Which polygons `predict` (and `demo`) write beside each mask, and the one default minimum area.

Kept apart from `cegate_cli.predict` (which loads torch) so the command line can show the
library's defaults in `--help` without loading the model stack.

Why 10 m² by default: a map's smallest region should be smaller than anything it is meant to
show and larger than per-pixel noise. 10 m² is a garden shed. On sub-metre imagery it removes
the speckle that otherwise becomes most of the polygons, while a larger area would start to
drop buildings; on imagery with pixels of 3.2 m or coarser (Sentinel-2, Landsat, HLS) one pixel
already covers 10 m², so nothing is removed and a single pixel stays a polygon. `--min-area`
changes it (0 keeps every region). The polygon counts and areas behind the choice are in
docs/README.md ("What predict writes"; benchmarks/min_area.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cegate_cli.infra.option_fields import option
from cegate_cli.predict.outputs import MERGED_STEM, NO_VECTOR, vector_formats

DEFAULT_MIN_AREA_M2 = 10.0


@dataclass(frozen=True)
class VectorOptions:
    """Which polygons to write next to each mask: `fmt` names a format of predict/outputs.py
    ("geojson", "gpkg"); `fmt=None` writes none.

    Regions smaller than `min_area_m2` are merged into their neighbours before polygons are
    made; `simplify_m` is a tolerance in metres (0: the exact pixel outlines). `merge` also
    writes the whole batch's polygons as one layer with a `scene` column, `OUT/polygons<suffix>`
    (predict/vector_merge.py).
    """

    fmt: str | None = option(
        "geojson",
        help=f"Polygons: {', '.join(f'{fmt.name} ({fmt.crs})' for fmt in vector_formats())} or {NO_VECTOR}.",
        flag="--vector",
    )
    min_area_m2: float = option(
        DEFAULT_MIN_AREA_M2,
        help="Merge regions smaller than this many square metres into their neighbours before making polygons "
        "(0 keeps all). The default removes speckle on sub-metre imagery and nothing at 3.2 m pixels or coarser.",
        flag="--min-area",
    )
    simplify_m: float = option(0.0, help="Simplify polygon outlines by this many metres.", flag="--simplify")
    merge: bool = option(
        False,
        help=f"Also write the whole batch's polygons as one layer, OUT/{MERGED_STEM}.<format> with a scene column, once "
        "every scene is mapped (a GeoPackage in the first scene's CRS).",
        flag="--vector-merge",
    )

    def check(self) -> None:
        """Refuse a format no writer has, a merge of no polygons or of a format that cannot be read
        back, and areas or tolerances that are negative or not finite (`inf` would merge every
        region into one, `nan` compares false and kept every one)."""
        from cegate_cli.errors import InputError
        from cegate_cli.predict.outputs import vector_format, vector_format_names

        if self.fmt is not None and self.fmt not in vector_format_names():
            raise InputError(f"--vector {self.fmt!r}: choose {', '.join(vector_format_names())} or {NO_VECTOR}")
        if self.merge:
            mergeable = " or ".join(f"--vector {fmt.name}" for fmt in vector_formats() if fmt.reader is not None)
            if self.fmt is None:
                raise InputError(f"--vector-merge merges the scenes' polygons, and --vector {NO_VECTOR} writes none; give {mergeable}")
            if vector_format(self.fmt).reader is None:
                raise InputError(f"--vector-merge: {vector_format(self.fmt).label} polygons cannot be read back to merge; use {mergeable}")
        if not (math.isfinite(self.min_area_m2) and self.min_area_m2 >= 0):
            raise InputError(
                f"--min-area {self.min_area_m2}: give square metres as a finite number, 0 or more (0 keeps every region; default {DEFAULT_MIN_AREA_M2:g})"
            )
        if not (math.isfinite(self.simplify_m) and self.simplify_m >= 0):
            raise InputError(f"--simplify {self.simplify_m}: give metres as a finite number, 0 or more (0 keeps the exact pixel outlines)")
