#!/usr/bin/env bash
# Labeled source folder -> run folder -> maps, with the cegate CLI.
set -euo pipefail
work="${1:-cegate-example}"
python3 -c "from pathlib import Path; from cegate_cli.data.synthetic import make_demo_dataset; make_demo_dataset(Path('$work/data'))"

# 1. Adapt: score the toolbox modules by Fisher information, train the top quarter.
cegate adapt "$work/data/source" -o "$work/run" --backbone tiny --bands blue,green,red,nir \
    --crop 64 --batch-size 8 --steps 200 --val-every 50 --overwrite

# 2. Which modules were chosen, in which layers, and why.
cegate inspect "$work/run"

# 3. Map whole scenes: <stem>.mask.tif (georeferenced, nodata 255) and <stem>.geojson (EPSG:4326).
cegate predict "$work/run" "$work/data/target/images" -o "$work/maps" --tile 256 --overlap 32 \
    --min-area 2000 --overwrite

# 4. Score against held-out labels.
cegate evaluate "$work/run" "$work/data/target_labeled" --tile 256 --overlap 32
