"""adapt says, before training, which classes the labels hold too little of to be learned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from data_rasters import write_tif
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.data.classes import ClassTable
from cegate_cli.data.coverage import class_coverage, coverage_warnings


def test_rare_absent_and_single_image_classes_are_flagged_and_common_ones_are_not() -> None:
    table = ClassTable.from_ids([0, 1, 2, 3, 4], ignore_index=255)
    counts = {0: 90_000, 1: 9_000, 2: 150, 3: 800, 255: 50_000}  # 4 absent; 255 is not a class
    images = {0: 10, 1: 6, 2: 3, 3: 1, 255: 10}
    coverage = class_coverage(table, counts, images)
    assert [round(c.share, 5) for c in coverage] == [0.90045, 0.09005, 0.0015, 0.008, 0.0]
    lines = coverage_warnings(coverage, total_images=10)
    assert len(lines) == 3
    assert lines[0].startswith("class 'class_2' (id 2) is 0.15% of the labeled pixels (150 px in 3 of 10 images)")
    assert lines[1].startswith("class 'class_3' (id 3) is 0.80% of the labeled pixels (800 px in 1 of 10 images)")
    assert lines[2].startswith("class 'class_4' (id 4) has no labeled pixels: it cannot be learned")
    assert coverage_warnings(class_coverage(table, counts, images)[:2], total_images=10) == []
    assert coverage_warnings(class_coverage(ClassTable.from_ids([0]), {0: 5}, {0: 1}), total_images=1) == []  # one image: nothing to compare


def test_adapt_warns_about_a_class_labeled_on_a_few_pixels_and_records_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for i in range(3):
        mask = np.zeros((48, 48), np.uint8)
        mask[:24] = 1
        if i == 0:
            mask[40:42, 40:42] = 2  # 4 pixels of class 2 in one image
        write_tif(data / "images" / f"t{i}.tif", rng.integers(1, 255, (4, 48, 48)).astype(np.uint8), descriptions=("blue", "green", "red", "nir"))
        write_tif(data / "masks" / f"t{i}.tif", mask)
    run = tmp_path / "run"
    flags = [
        "--backbone",
        "tiny",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--fisher-samples",
        "2",
        "--select",
        "2",
        "--val-every",
        "1",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, ["adapt", str(data), "-o", str(run), *flags])
    assert result.exit_code == 0, result.output
    assert "class 'class_2' (id 2) is 0.06% of the labeled pixels (4 px in 1 of 3 images)" in result.output
    manifest = json.loads((run / "run.json").read_text())
    assert any(w.startswith("class 'class_2' (id 2) is 0.06%") for w in manifest["data"]["warnings"])
    assert manifest["data"]["label_images"] == {"0": 3, "1": 3, "2": 1}
