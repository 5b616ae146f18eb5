"""Predicted outputs opened by software no one on the project wrote: QGIS and the system's GDAL.

The checks live in tests/gis_clients_check.py and run under a Python that has PyQGIS (Debian's
/usr/bin/python3 after `apt install qgis python3-qgis`), since QGIS is not on PyPI. Skipped only
where no such Python exists; CEGATE_QGIS_PYTHON names one explicitly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from predict_rasters import band_stats, pixel_model, random_scene, write_scene

from cegate_cli.data.classes import ClassInfo, ClassTable
from cegate_cli.predict import PredictOptions, VectorOptions, predict_many

CHECK = Path(__file__).with_name("gis_clients_check.py")
CLASSES = ClassTable(
    (
        ClassInfo(0, "water", (31, 120, 180)),
        ClassInfo(1, "forest", (51, 160, 44)),
        ClassInfo(2, "built-up & roads", (227, 26, 28)),
        ClassInfo(4, "bare soil", (253, 191, 111)),
    )
)


def _python_with_qgis() -> str | None:
    candidates = [os.environ.get("CEGATE_QGIS_PYTHON"), "/usr/bin/python3", shutil.which("python3")]
    for python in dict.fromkeys(c for c in candidates if c):
        if Path(python).resolve() == Path(sys.executable).resolve() or not Path(python).exists():
            continue
        probe = subprocess.run([python, "-c", "import qgis.core, osgeo.gdal"], capture_output=True, timeout=120)
        if probe.returncode == 0:
            return python
    return None


@pytest.mark.slow  # starts QGIS in another process
def test_qgis_and_gdal_show_class_names_colours_and_read_the_geopackage_cleanly(tmp_path):
    python = _python_with_qgis()
    if python is None:
        pytest.skip("QGIS is not installed (no Python with qgis.core and osgeo.gdal; e.g. apt install qgis python3-qgis)")
    data = random_scene(700, 800)
    data[:, 300:420, 100:260] = 0  # nodata: must be drawn transparent
    scene = write_scene(tmp_path / "in" / "scene.tif", data, nodata=0)
    model = pixel_model(num_classes=5)
    with torch.no_grad():
        model.bias[3] = -1e4  # id 3 has no class (the table skips it): never predicted, as after training
    summary = predict_many(
        model,
        [scene],
        tmp_path / "out",
        bands=(1, 2, 3),
        stats=band_stats(3),
        class_table=CLASSES,
        options=PredictOptions(tile=128, overlap=32),
        vectors=VectorOptions(fmt="gpkg", merge=True),
    )
    assert summary.ok and summary.merged.status == "done"
    mask, gpkg, merged = tmp_path / "out" / "scene.mask.tif", tmp_path / "out" / "scene.gpkg", tmp_path / "out" / "polygons.gpkg"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("PYTHONPATH", None)  # the system Python must not import this environment's packages
    run = subprocess.run([python, str(CHECK), str(mask), str(gpkg), str(merged)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    report = json.loads(run.stdout)
    mask_report = report["files"][str(mask)]
    assert mask_report["qgis_with_style"]["legend"] == ["water", "forest", "built-up & roads", "bare soil"]
    assert mask_report["qgis_with_style"]["sampled_transparent"] > 0
    assert mask_report["qgis_without_style"]["class_labels"] == ["water", "forest", "built-up & roads", "bare soil"]
    assert mask_report["gdal"]["category_names"] == ["water", "forest", "built-up & roads", "", "bare soil"]
    assert report["files"][str(gpkg)]["gdal_messages"] == [] and report["files"][str(gpkg)]["features"] > 0
    colours = [[str(c.id), c.name, "#{:02x}{:02x}{:02x}".format(*c.color)] for c in CLASSES.classes]
    for polygons in (gpkg, merged):  # the scene's layer and the batch's: the mask's colours, with and without the .qml
        polygon_report = report["files"][str(polygons)]
        assert polygon_report["qgis_with_style"]["categories"] == colours
        assert polygon_report["qgis_embedded_style"]["categories"] == colours
