"""Open cegate's outputs the way a GIS user does: QGIS (PyQGIS, headless) and the system's GDAL.

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/gis_clients_check.py OUT/scene.mask.tif [OUT/scene.gpkg OUT/polygons.gpkg ...]

Runs under the Python that has QGIS (Debian: `apt install qgis python3-qgis`, which brings GDAL's
own Python bindings), not the project's: it imports nothing from cegate and reads only the
files. The expected classes come from the mask's CEGATE_CLASSES tag. For each mask it checks:

- GDAL: category names and the raster attribute table (value, class, colour) as GDAL reads them,
  and GDAL's own Cloud Optimized GeoTIFF validator;
- QGIS with the style beside the mask (`<stem>.mask.qml`, loaded as the layer's default style):
  a paletted renderer whose legend lists exactly the classes, by name, in their colours; and the
  map QGIS draws, pixel for pixel at 1:1, shows each class in its colour and nodata transparent;
- QGIS without the style (only the mask and its .aux.xml): still a paletted renderer, whose
  entries for the class values carry the class names (from GDAL's category names).

For each GeoPackage: GDAL opens it without a warning (no "user_version ... may only be partially
supported") and GDAL's GeoPackage validator finds no error. For each polygon file (GeoPackage or
GeoJSON), against the classes of the first mask given: QGIS opens it with a categorized renderer
on class_id whose categories are exactly the classes, by name, in their colours; a GeoPackage
does so also alone in a scratch folder, without its .qml (the style stored in its layer_styles).

Prints one JSON report; exit code 0 when every check passed, 1 otherwise, 77 when QGIS or GDAL's
Python bindings cannot be imported (the caller skips).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:
    from osgeo import gdal
    from qgis.core import QgsApplication, QgsMapRendererSequentialJob, QgsMapSettings, QgsRasterLayer, QgsVectorLayer
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor
except ImportError as exc:  # the caller decides: skip
    print(json.dumps({"skipped": f"QGIS or GDAL Python bindings missing: {exc}"}))
    sys.exit(77)

gdal.UseExceptions()
SAMPLES = 400


def expected_classes(dataset: gdal.Dataset) -> list[tuple[int, str, tuple[int, int, int]]]:
    table = json.loads(dataset.GetMetadataItem("CEGATE_CLASSES"))
    return sorted((c["id"], c["name"], tuple(c["color"])) for c in table["classes"])


def check_gdal(mask: Path, classes: list, dataset: gdal.Dataset) -> dict:
    band = dataset.GetRasterBand(1)
    names = band.GetCategoryNames() or []
    rat = band.GetDefaultRAT()
    rows = []
    if rat is not None:
        for row in range(rat.GetRowCount()):
            rows.append([rat.GetValueAsString(row, col) for col in range(rat.GetColumnCount())])
    expected_rows = [[str(i), name, *map(str, color)] for i, name, color in classes]
    named = {i: (names[i] if i < len(names) else None) for i, _, _ in classes}
    report = {
        "category_names": names,
        "rat_columns": [rat.GetNameOfCol(c) for c in range(rat.GetColumnCount())] if rat is not None else None,
        "rat_rows": rows,
        "colour_table_entries": band.GetColorTable().GetCount() if band.GetColorTable() is not None else 0,
        "overviews": [f"{band.GetOverview(i).XSize}x{band.GetOverview(i).YSize}" for i in range(band.GetOverviewCount())],
        "gdal_version": gdal.__version__,
    }
    report["ok_category_names"] = all(named[i] == name for i, name, _ in classes)
    report["ok_rat"] = rows == expected_rows
    errors = cog_errors(mask)
    if errors is None:
        report["cog_errors"] = "GDAL's validator (osgeo_utils.samples) is not installed"
    else:
        report["cog_errors"], report["ok_cog"] = errors, not errors
    return report


def cog_errors(path: Path) -> list[str] | None:
    try:
        from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate
    except ImportError:
        return None
    errors, _details = validate(str(path), full_check=True)[:2]
    return list(errors)


def load_layer(path: Path) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), path.stem)  # default options: loads <name>.qml as the default style
    if not layer.isValid():
        raise RuntimeError(f"QGIS cannot open {path}")
    return layer


def check_qgis_styled(mask: Path, classes: list, dataset: gdal.Dataset) -> dict:
    layer = load_layer(mask)
    renderer = layer.renderer()
    palette = [(c.value, c.label, c.color.name()) for c in renderer.classes()] if renderer.type() == "paletted" else []
    legend = [label for label, _color in renderer.legendSymbologyItems()]
    expected = [(float(i), name, "#{:02x}{:02x}{:02x}".format(*color)) for i, name, color in classes]
    report = {
        "renderer": renderer.type(),
        "legend": legend,
        "palette": palette,
        "ok_renderer": renderer.type() == "paletted",
        "ok_legend": legend == [name for _, name, _ in classes],
        "ok_palette": [(float(v), label, color) for v, label, color in palette] == expected,
    }
    report.update(check_rendering(layer, classes, dataset))
    return report


def check_rendering(layer: QgsRasterLayer, classes: list, dataset: gdal.Dataset) -> dict:
    """Draw the layer at one screen pixel per mask pixel and compare sampled pixels' colours."""
    import numpy as np

    values = dataset.GetRasterBand(1).ReadAsArray()
    height, width = values.shape
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    colours = {i: color for i, _, color in classes}
    nodata = int(dataset.GetRasterBand(1).GetNoDataValue())
    rng = np.random.default_rng(0)
    wrong, checked, transparent = [], 0, 0
    for y, x in zip(rng.integers(0, height, SAMPLES), rng.integers(0, width, SAMPLES)):
        drawn = image.pixelColor(int(x), int(y))
        value = int(values[y, x])
        checked += 1
        if value == nodata or value not in colours:  # QGIS draws values outside the palette transparent
            transparent += 1
            ok = drawn.alpha() == 0
        else:
            ok = (drawn.red(), drawn.green(), drawn.blue(), drawn.alpha()) == (*colours[value], 255)
        if not ok:
            wrong.append({"x": int(x), "y": int(y), "value": value, "drawn": drawn.name(QColor.HexArgb)})
    return {
        "rendered_size": f"{image.width()}x{image.height()}",
        "sampled_pixels": checked,
        "sampled_transparent": transparent,
        "wrongly_drawn": wrong[:10],
        "ok_rendering": not wrong and image.width() == width and image.height() == height,
    }


def check_qgis_unstyled(mask: Path, classes: list) -> dict:
    """The mask and its .aux.xml alone, in a scratch folder: what QGIS makes of them unstyled."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / mask.name
        shutil.copy(mask, copy)
        shutil.copy(f"{mask}.aux.xml", f"{copy}.aux.xml")
        layer = load_layer(copy)
        renderer = layer.renderer()
        entries = {int(c.value): c.label for c in renderer.classes()} if renderer.type() == "paletted" else {}
    return {
        "renderer": renderer.type(),
        "entries": len(entries),
        "class_labels": [entries.get(i) for i, _, _ in classes],
        "ok_labels": renderer.type() == "paletted" and all(entries.get(i) == name for i, name, _ in classes),
    }


def check_gpkg(path: Path) -> dict:
    messages: list[str] = []

    def collect(level: int, number: int, text: str) -> None:
        messages.append(text)

    gdal.PushErrorHandler(collect)
    try:
        dataset = gdal.OpenEx(str(path), gdal.OF_VECTOR)
        layers = [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())]
        features = sum(dataset.GetLayer(i).GetFeatureCount() for i in range(dataset.GetLayerCount()))
        dataset = None
    finally:
        gdal.PopErrorHandler()
    report = {"layers": layers, "features": features, "gdal_messages": messages, "ok_no_warning": not messages}
    try:
        from osgeo_utils.samples.validate_gpkg import check
    except ImportError:
        return report
    try:
        errors = check(str(path), abort_at_first_error=False, warning_msg=False)
    except Exception as exc:  # the validator raises on its first error in some versions
        errors = [str(exc)]
    report["validator_errors"] = [str(e) for e in errors or []]
    report["ok_validator"] = not report["validator_errors"]
    return report


def check_qgis_polygons(path: Path, classes: list) -> dict:
    """The polygon file as QGIS opens it: its default style, from the .qml beside it (or, for a
    GeoPackage, from its layer_styles table, which QGIS reads first)."""
    layer = QgsVectorLayer(f"{path}|layername={path.stem}" if path.suffix == ".gpkg" else str(path), path.stem, "ogr")
    if not layer.isValid():
        return {"error": f"QGIS cannot open {path}", "ok_opened": False}
    renderer = layer.renderer()
    kind = renderer.type()
    categories = []
    if kind == "categorizedSymbol":
        categories = [(str(c.value()), c.label(), c.symbol().color().name()) for c in renderer.categories()]
    expected = [(str(i), name, "#{:02x}{:02x}{:02x}".format(*color)) for i, name, color in classes]
    return {
        "renderer": kind,
        "attribute": renderer.classAttribute() if kind == "categorizedSymbol" else None,
        "categories": categories,
        "features": layer.featureCount(),
        "ok_renderer": kind == "categorizedSymbol" and renderer.classAttribute() == "class_id",
        "ok_categories": categories == expected,
    }


def check_polygons(path: Path, classes: list | None) -> dict:
    report = check_gpkg(path) if path.suffix == ".gpkg" else {}
    if classes is None:
        report["qgis"] = {"error": "no mask given before it: its classes are the expected ones", "ok_classes_known": False}
        return report
    report["qgis_with_style"] = check_qgis_polygons(path, classes)
    if path.suffix == ".gpkg":
        with tempfile.TemporaryDirectory() as scratch:
            alone = Path(scratch) / path.name
            shutil.copy(path, alone)
            report["qgis_embedded_style"] = check_qgis_polygons(alone, classes)
    return report


def main(paths: list[str]) -> int:
    app = QgsApplication([], False)
    app.initQgis()
    results: dict[str, dict] = {}
    classes = None  # the first mask's, for the polygon files after it
    try:
        for name in paths:
            path = Path(name)
            if path.suffix in (".gpkg", ".geojson"):
                results[name] = check_polygons(path, classes)
                continue
            try:
                dataset = gdal.Open(str(path))
                classes = expected_classes(dataset)
                results[name] = {
                    "gdal": check_gdal(path, classes, dataset),
                    "qgis_with_style": check_qgis_styled(path, classes, dataset),
                    "qgis_without_style": check_qgis_unstyled(path, classes),
                }
            except Exception as exc:  # reported, not raised: PyQGIS may crash on exit with an exception in flight
                results[name] = {"error": f"{type(exc).__name__}: {exc}", "ok_opened": False}
            dataset = None
    finally:
        app.exitQgis()
    from qgis.core import Qgis

    ok = all(value for report in results.values() for key, value in _flatten(report) if key.startswith("ok_"))
    print(json.dumps({"qgis": Qgis.QGIS_VERSION, "ok": ok, "files": results}, indent=1))
    return 0 if ok else 1


def _flatten(report: dict):
    for key, value in report.items():
        if isinstance(value, dict):
            yield from _flatten(value)
        else:
            yield key, value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
