"""How many polygons, and how much building area, each `--min-area` leaves on real 0.6 m imagery.

    python benchmarks/min_area.py [--data ../shared/data/naip] [--areas 0 10 25 100 2000]

The evidence behind the default minimum area (cegate_cli/predict/vector_options.py). Two kinds of mask
of the NAIP test tiles are vectorised exactly as `predict` does, once per threshold:

- the labels themselves (clean outlines drawn by people);
- the masks of a per-pixel Gaussian classifier fitted on the train tiles (benchmarks/
  pixel_baseline.py): no spatial context, so as speckled as a weak model's masks get.

For each it prints the number of polygons, of building polygons, and the building area left.
A threshold that removes speckle but keeps the buildings is what the default should be.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pixel_baseline import GaussianPixelClassifier  # noqa: E402

from cegate_cli.data.classes import load_class_table  # noqa: E402
from cegate_cli.predict import vectorize_mask  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUILDING = 1


def pairs(folder: Path):
    for image in sorted((folder / "images").glob("*.tif")):
        with rasterio.open(image) as src:
            pixels = src.read().astype(np.float64)
        with rasterio.open(folder / "masks" / image.name) as src:
            yield image, pixels, src.read(1)


def classifier_masks(data: Path, out: Path, num_classes: int) -> list[Path]:
    features, labels = [], []
    for _, pixels, mask in pairs(data / "train"):
        flat, ids = pixels.reshape(pixels.shape[0], -1).T, mask.ravel()
        keep = ids < num_classes
        features.append(flat[keep][::7])  # every 7th labeled pixel is plenty for a closed-form fit
        labels.append(ids[keep][::7])
    model = GaussianPixelClassifier.fit(np.concatenate(features), np.concatenate(labels), num_classes)
    masks = []
    for image, pixels, mask in pairs(data / "test"):
        predicted = model.predict(pixels.reshape(pixels.shape[0], -1).T).reshape(mask.shape).astype(np.uint8)
        with rasterio.open(image) as src:
            profile = {**src.profile, "count": 1, "dtype": "uint8", "nodata": 255}
        masks.append(out / image.name)
        with rasterio.open(masks[-1], "w", **profile) as dst:
            dst.write(predicted, 1)
    return masks


def measure(masks: list[Path], areas: list[float], table, scratch: Path) -> list[tuple[float, int, int, float]]:
    rows = []
    for area in areas:
        polygons = buildings = 0
        building_area = 0.0
        for mask in masks:
            result = vectorize_mask(mask, scratch / f"{mask.stem}.gpkg", class_table=table, fmt="gpkg", min_area_m2=area)
            polygons += result.features
            buildings += result.class_features.get(BUILDING, 0)
            building_area += result.class_area_m2.get(BUILDING, 0.0)
        rows.append((area, polygons, buildings, building_area))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data" / "naip")
    parser.add_argument("--areas", type=float, nargs="+", default=[0, 5, 10, 25, 50, 100, 500, 2000])
    args = parser.parse_args()
    table = load_class_table(args.data / "classes.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        (scratch / "predicted").mkdir()
        kinds = {
            "labels": sorted((args.data / "test" / "masks").glob("*.tif")),
            "per-pixel classifier": classifier_masks(args.data, scratch / "predicted", table.num_classes),
        }
        print("| masks | min area (m²) | polygons | building polygons | building area (m²) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for kind, masks in kinds.items():
            for area, polygons, buildings, building_area in measure(masks, args.areas, table, scratch):
                print(f"| {kind} | {area:g} | {polygons} | {buildings} | {building_area:,.0f} |")


if __name__ == "__main__":
    main()
