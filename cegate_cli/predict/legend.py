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

Polygons get the same colours: `<name>.qml` beside each polygon file (`polygon_qml`), a
categorized renderer on `class_id` with one fill per class, its name as the legend label. QGIS
loads it as the layer's default style by the same naming rule, and the GeoPackage sink also
stores it inside the file (vector_io.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from cegate_cli.data.classes import ClassTable
from cegate_cli.infra.atomic import write_text_atomic

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
        "qgis",
        version=QGIS_STYLE_VERSION,
        styleCategories="Symbology",
        hasScaleBasedVisibilityFlag="0",
        minScale="1e+08",
        maxScale="0",
    )
    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(
        provider,
        "resampling",
        enabled="false",
        zoomedInResamplingMethod="nearestNeighbour",
        zoomedOutResamplingMethod="nearestNeighbour",
        maxOversampling="2",
    )
    renderer = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1", nodataColor="")
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for c in sorted(class_table.classes, key=lambda c: c.id):
        color = "#{:02x}{:02x}{:02x}".format(*c.color)
        ET.SubElement(palette, "paletteEntry", value=str(c.id), label=c.name, color=color, alpha="255")
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(
        pipe,
        "huesaturation",
        saturation="0",
        grayscaleMode="0",
        colorizeOn="0",
        colorizeRed="255",
        colorizeGreen="128",
        colorizeBlue="128",
        colorizeStrength="100",
    )
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def polygon_style_path(polygon_path: Path) -> Path:
    """The polygons' QGIS style: `a.gpkg` -> `a.qml` (QGIS's default-style name, as for the mask)."""
    return Path(polygon_path).with_suffix(".qml")


def polygon_qml(class_table: ClassTable, attribute: str = "class_id") -> str:
    """A QGIS layer style for polygons: categorized on `attribute`, one solid fill per class in the
    mask's colour, labelled with its name.

    Each fill's outline is a hairline of its own colour, so neighbouring polygons meet without the
    background showing through the anti-aliased seam, and the map looks like the mask. Symbol
    properties are written both as QGIS 3.18+ writes them (`Option`) and as older releases read
    them (`prop`); each release reads the form it knows.
    """
    root = ET.Element(
        "qgis",
        version=QGIS_STYLE_VERSION,
        styleCategories="Symbology",
        hasScaleBasedVisibilityFlag="0",
        minScale="1e+08",
        maxScale="0",
    )
    renderer = ET.SubElement(root, "renderer-v2", type="categorizedSymbol", attr=attribute, symbollevels="0", forceraster="0", enableorderby="0")
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for index, c in enumerate(sorted(class_table.classes, key=lambda c: c.id)):
        ET.SubElement(categories, "category", value=str(c.id), symbol=str(index), label=c.name, render="true")
        symbol = ET.SubElement(symbols, "symbol", type="fill", name=str(index), alpha="1", clip_to_extent="1", force_rhr="0")
        layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "pass": "0", "locked": "0", "enabled": "1"})
        rgba = "{},{},{},255".format(*c.color)
        properties = {
            "color": rgba,
            "style": "solid",
            "outline_color": rgba,
            "outline_style": "solid",
            "outline_width": "0",
            "outline_width_unit": "MM",
            "joinstyle": "miter",
        }
        options = ET.SubElement(layer, "Option", type="Map")
        for key, value in properties.items():
            ET.SubElement(options, "Option", name=key, type="QString", value=value)
        for key, value in properties.items():
            ET.SubElement(layer, "prop", k=key, v=value)
    ET.SubElement(renderer, "rotation")
    ET.SubElement(renderer, "sizescale")
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerGeometryType").text = "2"  # polygons
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def write_polygon_style(polygon_path: Path, class_table: ClassTable) -> Path:
    """Write `<name>.qml` beside `polygon_path` (atomically)."""
    style = polygon_style_path(polygon_path)
    write_text_atomic(style, polygon_qml(class_table))
    return style


def write_legend(mask_path: Path, class_table: ClassTable) -> tuple[Path, Path]:
    """Write `<mask>.tif.aux.xml` and `<stem>.mask.qml` beside `mask_path` (each atomically)."""
    aux, style = legend_paths(Path(mask_path))
    write_text_atomic(aux, pam_xml(class_table))
    write_text_atomic(style, qml(class_table))
    return aux, style
