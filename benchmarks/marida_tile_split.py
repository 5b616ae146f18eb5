"""Split MARIDA's development patches by Sentinel-2 tile, so `bench_real.py --settings marida`
scores scenes of tiles it never trained on: train = tile 16PCC, test = tiles 16PEC and 16QED.

A held-out-tiles check on the development data only (prep.py's `train` folder); the reserved
tiles stay untouched. The new folders hold links to the prepared files, not copies.

    python benchmarks/marida_tile_split.py OUT/marida SPLIT
    python benchmarks/bench_real.py --settings marida --marida SPLIT ...
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

TRAIN_TILES = ("16PCC",)
TEST_TILES = ("16PEC", "16QED")
TILE = re.compile(r"_(\d\d[A-Z]{3})_\d+\.tif$")


def split(prepared: Path, out: Path) -> dict[str, int]:
    """Link prepared/train's patches into out/{train,test} by tile; returns the counts."""
    source = prepared / "train"
    if not (source / "images").is_dir() or not (source / "classes.yaml").is_file():
        raise SystemExit(f"{source}: not a prep.py output (images/, masks/, classes.yaml); build it with prep.py first")
    if out.exists():
        raise SystemExit(f"{out}: exists; give a new folder")
    counts = {"train": 0, "test": 0}
    for part in counts:
        for sub in ("images", "masks"):
            (out / part / sub).mkdir(parents=True)
        shutil.copyfile(source / "classes.yaml", out / part / "classes.yaml")
    for image in sorted((source / "images").glob("*.tif")):
        match = TILE.search(image.name)
        tile = match.group(1) if match else None
        part = "train" if tile in TRAIN_TILES else "test" if tile in TEST_TILES else None
        if part is None:
            continue
        for sub in ("images", "masks"):
            (out / part / sub / image.name).symlink_to((source / sub / image.name).resolve())
        counts[part] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared", type=Path, help="prep.py's output folder (holds train/ and test/)")
    parser.add_argument("out", type=Path, help="new folder for the split")
    args = parser.parse_args()
    counts = split(args.prepared, args.out)
    print(f"{args.out}: {counts['train']} train patches ({', '.join(TRAIN_TILES)}), {counts['test']} test patches ({', '.join(TEST_TILES)})")


if __name__ == "__main__":
    main()
