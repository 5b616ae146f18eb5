"""What `predict` writes for each scene, declared once: every output's files and the option that asks for it.

Two sorts of output:
- rasters on the scene's grid, written together while the scene is mapped (writer.py: the mask
  with its legend, and the optional confidence and class probabilities). Each is
  `OUT/<stem>.<name>.tif`; a switch `--<name>` asks for an optional one, and the library takes
  it by the same name: `MapOptions(outputs=("confidence",))`, `PredictOptions(confidence=True)`,
  `OutputPaths.confidence`, `predict_scene(confidence_path=...)`.
- polygon formats, made from the finished mask (vectorize.py): `--vector <name>` picks one,
  written as `OUT/<stem><suffix>` by its sink (vector_io.py), with a QGIS style beside it
  (`OUT/<stem>.qml`, the mask's colours). A format is its sink and one `register_vector_format`
  call; one from outside the package (a test's, a plugin's) registers itself the same way. A
  format that can be read back (`reader`) also offers the batch's one layer, `--vector-merge`:
  every scene's polygons with a `scene` column in `OUT/polygons<suffix>` (vector_merge.py).

The rasters' values come from the blender (blend.py) and their bands from writer.py, so a new
raster is declared here and computed there.

The command line's switches and `--vector` words, `MapOptions`' and `VectorOptions`' checks, the
output names, which outputs of a batch already exist, and which files in an input folder are
cegate's own outputs (never inputs) are all read from here. Nothing here loads torch, rasterio
or GDAL, so `predict --help` stays quick.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cegate_cli.predict.legend import legend_paths, polygon_style_path


@dataclass(frozen=True)
class RasterOutput:
    """A GeoTIFF on the scene's grid: `OUT/<stem>.<name>.tif`."""

    name: str
    help: str
    """What its switch says in `--help` (an output without a switch is always written)."""
    switch: bool = True
    side_files: Callable[[Path], tuple[Path, ...]] | None = None
    """The files written beside it, from its path (the mask's GDAL and QGIS legends)."""

    @property
    def marker(self) -> str:
        """What ends a file's stem when cegate wrote it: `.confidence` of `a.confidence.tif`."""
        return f".{self.name}"

    @property
    def suffix(self) -> str:
        return f"{self.marker}.tif"

    @property
    def flag(self) -> str:
        return f"--{self.name}"


@dataclass(frozen=True)
class VectorFormat:
    """Polygons with class_id, class_name and area_m2, made from the mask: `OUT/<stem><suffix>`."""

    name: str
    """`--vector`'s word for it, and `VectorOptions.fmt`."""
    label: str
    """Its name in messages: "GeoJSON"."""
    suffix: str
    crs: str
    """Which CRS the file holds, as `--vector`'s help says it ("EPSG:4326", "native CRS")."""
    lonlat: bool
    """Written in longitude/latitude (the mask's CRS must convert to it) rather than the mask's CRS."""
    sink: str
    """"module:Class" of its writer (vector_io.py), a FeatureSink made as `Class(path, crs)` with
    the mask's CRS; named, not imported, so its libraries load only when polygons are written."""
    reader: str | None = None
    """"module:function" reading a file of this format back as `(crs, batches)` (vector_io.py's
    `read_features`); the batch's merged layer is made from them. None: `--vector-merge` refuses
    the format."""
    embeds_style: bool = False
    """Its sink takes `style=` (a QGIS style, QML text) and stores it inside the file, where QGIS
    finds it when the file travels without its `.qml`."""

    def open_sink(self, path: Path, crs: Any, style: str | None = None) -> Any:
        """The writer for `path`; `style` reaches only a sink that embeds it."""
        extra = {"style": style} if self.embeds_style and style is not None else {}
        return _named(self.sink)(path, crs, **extra)

    def read(self, path: Path) -> tuple[Any, Any]:
        """`(crs, batches)` of a file of this format (KeyError if it has no reader)."""
        if self.reader is None:
            raise KeyError(self.name)
        return _named(self.reader)(path)

    @property
    def merged_name(self) -> str:
        """The batch's one layer, `--vector-merge`: `polygons.gpkg`."""
        return f"{MERGED_STEM}{self.suffix}"


def _named(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


RASTER_OUTPUTS: tuple[RasterOutput, ...] = (
    RasterOutput("mask", "class ids, colour table and class names", switch=False, side_files=legend_paths),
    RasterOutput("confidence", "Also write <stem>.confidence.tif (max probability)."),
    RasterOutput("probabilities", "Also write <stem>.probabilities.tif: one band per class (named after it), probability in percent."),
)
"""In the order `OutputPaths.all()` lists them (after the polygons)."""

NO_VECTOR = "none"
"""--vector's word for no polygons (VectorOptions(fmt=None))."""
_VECTOR_FORMATS: list[VectorFormat] = []


def register_vector_format(fmt: VectorFormat) -> VectorFormat:
    """Add a polygon format; a word or suffix another format holds is refused (ValueError)."""
    if fmt.name == NO_VECTOR or any(other.name == fmt.name or other.suffix == fmt.suffix for other in _VECTOR_FORMATS):
        raise ValueError(f"vector format {fmt.name!r} ({fmt.suffix}): its word or suffix is taken")
    _VECTOR_FORMATS.append(fmt)
    return fmt


def unregister_vector_format(name: str) -> None:
    """Remove a format registered from outside the package (a test's)."""
    _VECTOR_FORMATS[:] = [fmt for fmt in _VECTOR_FORMATS if fmt.name != name]


MERGED_STEM = "polygons"
"""`--vector-merge` writes the whole batch's polygons to `OUT/polygons<suffix>` (a scene with this
stem is refused then, its own polygons would take that name)."""

_READER = "cegate_cli.predict.vector_io:read_features"
register_vector_format(
    VectorFormat("geojson", "GeoJSON", ".geojson", "EPSG:4326", lonlat=True, sink="cegate_cli.predict.vector_io:GeoJSONSink", reader=_READER)
)
register_vector_format(
    VectorFormat(
        "gpkg",
        "GeoPackage",
        ".gpkg",
        "native CRS",
        lonlat=False,
        sink="cegate_cli.predict.vector_io:GeoPackageSink",
        reader=_READER,
        embeds_style=True,
    )
)

SCRATCH_MARKER = ".stream"
"""The stem ending of the scratch GeoTIFFs rasters are streamed into before their COG copy."""


def raster_output(name: str) -> RasterOutput:
    """The raster output `name` (KeyError if none)."""
    for output in RASTER_OUTPUTS:
        if output.name == name:
            return output
    raise KeyError(name)


def switched_outputs() -> tuple[RasterOutput, ...]:
    """The optional rasters, each asked for by its switch."""
    return tuple(output for output in RASTER_OUTPUTS if output.switch)


def output_markers() -> tuple[str, ...]:
    """Stem endings of every GeoTIFF cegate writes into an output folder, scratch files included."""
    return tuple(output.marker for output in RASTER_OUTPUTS) + (SCRATCH_MARKER,)


def vector_side_files(path: Path) -> tuple[Path, ...]:
    """The files written beside a polygon file of any format: its QGIS style, `<name>.qml`."""
    return (polygon_style_path(path),)


def vector_formats() -> tuple[VectorFormat, ...]:
    """Every polygon format, in the order `--vector`'s help lists them."""
    return tuple(_VECTOR_FORMATS)


def vector_format(name: str) -> VectorFormat:
    """The format `--vector name` means (KeyError if none)."""
    for fmt in _VECTOR_FORMATS:
        if fmt.name == name:
            return fmt
    raise KeyError(name)


def vector_format_names() -> tuple[str, ...]:
    return tuple(fmt.name for fmt in _VECTOR_FORMATS)
