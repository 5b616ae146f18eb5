"""Blend a finished run's head with the target's class centroids, as `--prototypes` does at the
end of a `--target` run, and write the result as a new run folder for `cegate evaluate`.

It measures the centroid step on a source-only run (no self-training), which `adapt` does not
offer: docs/benchmarks-real.md, "Target class centroids".

    python benchmarks/prototypes_on_run.py RUN TARGET_IMAGES OUT [--blend 0.5]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from cegate_cli.model.decoder import CLASS_BIAS
from cegate_cli.pipelines.inference import load_for_inference
from cegate_cli.predict.map_options import MapOptions
from cegate_cli.run.layout import ADAPTER_BEST, ADAPTER_LAST
from cegate_cli.run.weights import DECODER_PREFIX, load_weights, save_weights
from cegate_cli.train.prototypes import CLASS_WEIGHT, PROTOTYPE_SEED_OFFSET, classifier_inputs, fit_prototypes, prototype_tiles, with_prototypes
from cegate_cli.train.target_data import discover_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("target", type=Path, help="folder of unlabeled target images")
    parser.add_argument("out", type=Path, help="new run folder (a copy of RUN with the blended head)")
    parser.add_argument("--blend", type=float, default=0.5)
    args = parser.parse_args()
    loaded = load_for_inference(args.run, MapOptions())
    manifest = loaded.manifest
    target = discover_target(args.target, manifest.bands)
    seed = manifest.training.seed + PROTOTYPE_SEED_OFFSET  # the tiles and positions a run of this seed reads
    tiles = prototype_tiles(target.images, target.band_indexes, manifest.normalization, manifest.classes.ignore_index, seed)
    loaded.model.eval()
    features, scores = classifier_inputs(loaded.model, tiles, loaded.model, seed)
    tensors = load_weights(args.run / ADAPTER_BEST, manifest.run_id)
    fit = fit_prototypes(tensors[f"{DECODER_PREFIX}{CLASS_WEIGHT}"], tensors[f"{DECODER_PREFIX}{CLASS_BIAS}"], features, scores, args.blend)
    print(json.dumps({"blend": args.blend, **fit.to_dict()}))
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose a new folder")
    shutil.copytree(args.run, args.out)
    for name in (ADAPTER_BEST, ADAPTER_LAST):
        path = args.out / name
        if path.exists():
            save_weights(path, with_prototypes(load_weights(path, manifest.run_id), fit, DECODER_PREFIX), manifest.run_id)


if __name__ == "__main__":
    main()
