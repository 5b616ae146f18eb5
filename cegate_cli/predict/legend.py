"""Class names and colours where GIS software looks for them: GDAL's .aux.xml and a QGIS style.

A mask's pixel values are class ids; people need the names. Three places carry them, each read
by other software:

- GDAL category names and a raster attribute table (value, class, red, green, blue) in
  `<mask>.tif.aux.xml`. GDAL keeps both there for every GeoTIFF (set them with GDAL's own API
  and it writes this very file), `gdalinfo` prints them, ArcGIS shows the table, and QGIS labels
  colour-table entries with the category names.
- `<stem>.mask.qml`, a QGIS layer style: a paletted renderer listing only the classes, with
  their names and colours. QGIS loads a style named like the raster as its default, so the legend
  shows the classes instead of the 256 entries a TIFF colour table always has (the format
  stores 2^8 colours for a byte band, so that table cannot be cut to the classes).
- Tags inside the mask (`writer.class_tags`), for programs that read the file alone.

Both sidecars are written atomically; `write_legend` is called before the mask is renamed into
place, so a mask under its final name always has them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from cegate_cli.infra.atomic import write_text_atomic
from cegate_cli.data.classes import ClassTable

# GDAL's raster attribute table codes (gdal.h: GDALRATFieldType, GDALRATFieldUsage)
_GFT_INTEGER, _GFT_STRING = 0, 2
_GFU_NAME, _GFU_MINMAX, _GFU_RED, _GFU_GREEN, _GFU_BLUE = 2, 5, 6, 7, 8
QGIS_STYLE_VERSION = "3.22.0"  # the oldest long-term release whose reading of this style was checked


def aux_xml_path(mask_path: Path) -> Path:
    """GDAL's sidecar name: the full file name plus `.aux.xml`."""
    return Path(f"{mask_path}.aux.xml")


def qml_path(mask_path: Path) -> Path:
    """QGIS's default-style name: the file name with `.qml` for its last suffix."""
    return Path(mask_path).with_suffix(".qml")


def legend_paths(mask_path: Path) -> tuple[Path, Path]:
    return aux_xml_path(mask_path), qml_path(mask_path)


def category_names(class_table: ClassTable) -> list[str]:
    """Names indexed by pixel value, from 0 to the largest id; ids without a class get ''."""
    names = [""] * class_table.num_classes
    for c in class_table.classes:
        names[c.id] = c.name
    return names


def pam_xml(class_table: ClassTable) -> str:
    """The `.aux.xml` (GDAL's PAM format) with band 1's category names and attribute table."""
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    categories = ET.SubElement(band, "CategoryNames")
    for name in category_names(class_table):
        ET.SubElement(categories, "Category").text = name
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    columns = [
        ("value", _GFT_INTEGER, _GFU_MINMAX),
        ("class", _GFT_STRING, _GFU_NAME),
        ("red", _GFT_INTEGER, _GFU_RED),
        ("green", _GFT_INTEGER, _GFU_GREEN),
        ("blue", _GFT_INTEGER, _GFU_BLUE),
    ]
    for index, (name, kind, usage) in enumerate(columns):
        field = ET.SubElement(rat, "FieldDefn", index=str(index))
        ET.SubElement(field, "Name").text = name
        ET.SubElement(field, "Type").text = str(kind)
        ET.SubElement(field, "Usage").text = str(usage)
    for row, c in enumerate(sorted(class_table.classes, key=lambda c: c.id)):
        entry = ET.SubElement(rat, "Row", index=str(row))
        for value in (c.id, c.name, *c.color):
            ET.SubElement(entry, "F").text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def qml(class_table: ClassTable) -> str:
    """A QGIS layer style: paletted renderer on band 1, one entry per class, nearest resampling."""
    root = ET.Element(
        "qgis", version=QGIS_STYLE_VERSION, styleCategories="Symbology", hasScaleBasedVisibilityFlag="0",
        minScale="1e+08", maxScale="0",
    )
    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(
        provider, "resampling", enabled="false", zoomedInResamplingMethod="nearestNeighbour",
        zoomedOutResamplingMethod="nearestNeighbour", maxOversampling="2",
    )
    renderer = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1", nodataColor="")
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for c in sorted(class_table.classes, key=lambda c: c.id):
        color = "#{:02x}{:02x}{:02x}".format(*c.color)
        ET.SubElement(palette, "paletteEntry", value=str(c.id), label=c.name, color=color, alpha="255")
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(
        pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0", colorizeRed="255",
        colorizeGreen="128", colorizeBlue="128", colorizeStrength="100",
    )
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def write_legend(mask_path: Path, class_table: ClassTable) -> tuple[Path, Path]:
    """Write `<mask>.tif.aux.xml` and `<stem>.mask.qml` beside `mask_path` (each atomically)."""
    aux, style = legend_paths(Path(mask_path))
    write_text_atomic(aux, pam_xml(class_table))
    write_text_atomic(style, qml(class_table))
    return aux, style
