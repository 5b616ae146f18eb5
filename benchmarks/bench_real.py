"""Benchmark quality on real imagery: NAIP tiles, in-domain and under a constructed sensor shift.

    python benchmarks/bench_real.py --settings naip naip-shift --seeds 0 1 2 --json real.json --out docs/benchmarks-real.md
    python benchmarks/bench_real.py --from-json real_a.json real_b.json --out docs/benchmarks-real.md   # merge, no training

docs/benchmarks-real.md says what the data, the shift and every row are. In short, per setting:

  naip        train tiles -> test tiles (both 0.6 m NAIP, one domain)
  naip-shift  train tiles -> test tiles after a fixed seeded sensor shift (benchmarks/real_shift.py);
              unlabeled target: the train tiles shifted the same way; reference: trained on those
              shifted train tiles WITH their labels (the upper bound)
  synthetic   the demo's generated source -> held-out target scenes (cegate_cli.data.synthetic)
  dubai       aerial RGB, districts 1-3 -> districts 4-6 of the same city (a real region shift);
              unlabeled target: target/unlabeled; reference: target/train with its labels
  dubai-reverse  the same pair the other way: target/train -> source/test; unlabeled: source/train's images
  marida      Sentinel-2 marine scenes, train -> test (in domain)

Rows: `majority` (the most frequent training class everywhere), `pixel` (a per-pixel Gaussian
classifier on band values, benchmarks/pixel_baseline.py), and cegate runs through the library
(`adapt()` then `evaluate_run()`, the same whole-tile prediction `cegate evaluate` does) for every
rule of `--rules` (TrainConfig.selection), source-only and, where a setting has an unlabeled target,
with self-training on it. Every row is scored by cegate's ConfusionMatrix through `evaluate_scene`
on the same test pixels (labels 255 and nodata excluded). One progress line per run goes to stderr.
A source-only run another setting already trained on the same source and seed in this process is
scored again, not retrained (`TrainedRuns`): `--settings naip naip-shift` trains each rule once.
"""

from __future__ import annotations

import os

os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before torch loads OpenMP: busy-waiting threads wreck timings on shared cores

import argparse
import datetime as _dt
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pixel_baseline import GaussianPixelClassifier  # noqa: E402
from real_shift import Shift, shift_folder  # noqa: E402
from real_table import EARLIER_TRAIN, MODE_SUFFIX, render_block  # noqa: E402
from report_block import cpu_name, replace_block  # noqa: E402

from cegate_cli.backbone.galileo_backbone import GalileoOptions  # noqa: E402
from cegate_cli.model.decoder import DECODERS  # noqa: E402
from cegate_cli.options.train import (  # noqa: E402  # noqa: E402
    LOSSES,  # noqa: E402
    SCHEDULES,
    SELECTIONS,
    TARGET_NORMS,
    SelfTrainConfig,
    TrainConfig,
)
from cegate_cli.toolbox import ToolboxConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("naip", "naip-shift", "synthetic", "dubai", "dubai-reverse", "marida")
REAL_PAIRS = ("dubai", "dubai-reverse")
"""Settings with real target-region imagery (unlabeled for self-training, labeled for the reference)."""
TARGET_MODES = ("source-only", "target-stats", "self-training")
BLOCK = "bench_real"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO / ".." / "shared" / "data" / "naip",
        help="NAIP folder with train/ and test/ (images/, masks/, classes.yaml); read only",
    )
    parser.add_argument(
        "--dubai",
        type=Path,
        default=REPO / ".." / "shared" / "data" / "dubai",
        help="the two-region aerial pair (source/, target/): settings dubai and dubai-reverse",
    )
    parser.add_argument(
        "--marida",
        type=Path,
        default=REPO / ".." / "shared" / "data" / "marida" / "built" / "marida",
        help="MARIDA as built by its prep.py (train/, test/): setting marida",
    )
    parser.add_argument("--max-tiles", type=int, default=None, help="use only the first N tiles (by name) of train and of test: smoke runs")
    parser.add_argument(
        "--rules",
        nargs="+",
        choices=[*SELECTIONS, *VARIANTS],
        default=list(SELECTIONS),
        help="cegate rows: what trains (fisher = cegate; random, all, none = head only, full = full fine-tuning; "
        f"{', '.join(VARIANTS)}: Fisher variants, see VARIANTS)",
    )
    parser.add_argument(
        "--target",
        nargs="+",
        dest="target_modes",
        choices=TARGET_MODES,
        default=list(TARGET_MODES),
        help="settings with an unlabeled target: train on the source only; target-stats: that run with the target "
        "read under the target folder's statistics (normalisation alone, no self-training); self-training",
    )
    parser.add_argument(
        "--reference-rules",
        nargs="*",
        choices=[*SELECTIONS, *VARIANTS],
        default=["fisher"],
        help="naip-shift: rules also trained on the shifted train tiles with labels (the upper bound)",
    )
    parser.add_argument("--backbone", nargs="+", default=["tiny"], help="backbone spec(s), passed to adapt() as given")
    parser.add_argument("--decoder", nargs="+", choices=DECODERS, default=[TrainConfig.decoder])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--loss", choices=LOSSES, default=defaults.loss, help="task loss of the cegate rows")
    parser.add_argument("--rare-crops", type=int, default=defaults.rare_crops, help="candidate windows per training crop")
    parser.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=defaults.calibrate,
        help="fit class-score offsets on validation after training (adapt --calibrate)",
    )
    parser.add_argument("--val-crops", type=int, default=defaults.val_crops, help="validation crops (best step, calibration)")
    parser.add_argument(
        "--class-weight-power", type=float, default=defaults.class_weight_power, help="exponent of the balanced class weights (0: every class alike)"
    )
    parser.add_argument(
        "--illumination", type=float, default=defaults.illumination, help="shared brightness/contrast jitter of source crops (TrainConfig.illumination)"
    )
    parser.add_argument("--adapt-schedule", choices=SCHEDULES, default=SelfTrainConfig.schedule, help="self-training schedule")
    parser.add_argument("--adapt-steps", type=int, default=None, help="source-first: steps after the source run (default: the library's)")
    parser.add_argument("--target-norm", choices=TARGET_NORMS, default=SelfTrainConfig.target_norm, help="self-training: target statistics")
    parser.add_argument(
        "--source-batch",
        action=argparse.BooleanOptionalAction,
        default=SelfTrainConfig.source_batch,
        help="self-training: a plain source batch every step beside the mixed one",
    )
    parser.add_argument("--guard", action=argparse.BooleanOptionalAction, default=SelfTrainConfig.guard, help="source-first: the guard")
    parser.add_argument("--prior-alignment", action="store_true", help="self-training: align pseudo-labels to the source prior")
    parser.add_argument("--patch-size", type=int, default=None, help="Galileo backbones: patch size (default: cegate's)")
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="also train the head with each single module, then the oracle's set (the top single-module "
        "gains, as many as --select gives): the selection study's upper bound (slow: one run per module); "
        "in-domain settings only (naip)",
    )
    parser.add_argument("--kinds", default=None, help="toolbox kinds of the cegate rows, a comma list (default: the default toolbox)")
    parser.add_argument("--select", default=defaults.select, help="share or count of modules for fisher and random")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu", help="training and prediction device (cpu, cuda, auto)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--pixel-samples", type=int, default=2000, help="training pixels per tile for the pixel classifier")
    parser.add_argument("--shift-seed", type=int, default=0, help="naip-shift: the seed its per-band radiometry is drawn from")
    parser.add_argument("--synthetic-size", type=int, default=256, help="synthetic: scene side in pixels")
    parser.add_argument("--work", type=Path, default=None, help="folder for shifted tiles and runs (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's numbers here (rewritten after each run)")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        default=None,
        help="render earlier --json files (merged; a later file's run replaces an earlier one's) instead of running",
    )
    parser.add_argument("--out", type=Path, default=None, help="markdown page whose generated block is replaced")
    parser.add_argument("--note", default=None, help="a line put first in the generated block (e.g. that it is a smoke run)")
    args = parser.parse_args(argv)
    if "target-stats" in args.target_modes and "source-only" not in args.target_modes:
        parser.error("--target target-stats scores the source-only run: give source-only too")
    return args


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Domains:
    """The folders one setting trains and scores on."""

    source: Path
    """Labeled training folder (images/, masks/, classes.yaml)."""
    test: Path
    """Labeled folder every row is scored on."""
    target: Path | None = None
    """Unlabeled target-domain images for self-training; None for an in-domain setting."""
    reference: Path | None = None
    """Labeled target-domain training folder for the upper-bound rows; None if there is none."""
    data: dict[str, Any] = field(default_factory=dict)
    """What the tables say about the data (tile counts, the shift); part of every record."""


def first_tiles(folder: Path, max_tiles: int | None) -> list[Path]:
    images = sorted((folder / "images").glob("*.tif"))
    return images if max_tiles is None else images[:max_tiles]


def view(folder: Path, max_tiles: int | None, dst: Path) -> Path:
    """`folder` itself, or with --max-tiles a folder of links to its first tiles (nothing is copied)."""
    if max_tiles is None:
        return folder
    for image in first_tiles(folder, max_tiles):
        for sub in ("images", "masks"):
            link = dst / sub / image.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to((folder / sub / image.name).resolve())
    if (folder / "classes.yaml").is_file() and not (dst / "classes.yaml").exists():
        (dst / "classes.yaml").symlink_to((folder / "classes.yaml").resolve())
    return dst


def prepare(setting: str, seed: int, args: argparse.Namespace, work: Path) -> Domains:
    """The setting's folders, written under `work` where they must be made (shifted or generated)."""
    if setting == "synthetic":
        from cegate_cli.data.synthetic import make_demo_dataset

        demo = make_demo_dataset(work / "synthetic" / f"seed{seed}", size=args.synthetic_size, seed=seed)
        count = lambda folder: len(first_tiles(folder, None))  # noqa: E731
        scenes = (
            f"{count(demo.source_dir)} labeled source, {count(demo.target_dir)} unlabeled target and "
            f"{count(demo.target_labels_dir)} held-out target scenes of {args.synthetic_size} px, generated from the run's seed"
        )
        return Domains(demo.source_dir, demo.target_labels_dir, demo.target_dir, None, {"scenes": scenes})
    if setting in REAL_PAIRS:
        return real_pair(setting, args, work)
    if setting == "marida":
        return Domains(
            args.marida / "train",
            args.marida / "test",
            data={"train_tiles": len(first_tiles(args.marida / "train", None)), "test_tiles": len(first_tiles(args.marida / "test", None))},
        )
    train, test = args.data / "train", args.data / "test"
    subset = "all" if args.max_tiles is None else f"first{args.max_tiles}"  # one folder per subset: no stale links
    source = view(train, args.max_tiles, work / "naip" / subset / "train")
    counts = {"train_tiles": len(first_tiles(train, args.max_tiles)), "test_tiles": len(first_tiles(test, args.max_tiles)), "bands": list(band_names(train))}
    if setting == "naip":
        return Domains(source, view(test, args.max_tiles, work / "naip" / subset / "test"), data=counts)
    shift = Shift.draw(args.shift_seed, len(counts["bands"]))
    root = work / "naip-shift" / f"shift{shift.seed}-{subset}"
    masks = lambda folder: {p: folder / "masks" / p.name for p in first_tiles(folder, args.max_tiles)}  # noqa: E731
    shifted_test = shift_folder(first_tiles(test, args.max_tiles), masks(test), root / "test", shift, test / "classes.yaml")
    reference = shift_folder(first_tiles(train, args.max_tiles), masks(train), root / "reference", shift, train / "classes.yaml")
    target = root / "target"  # the reference's images without their labels: what a user of the target sensor has
    for image in sorted((reference / "images").glob("*.tif")):
        link = target / "images" / image.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(image.resolve())
    return Domains(source, shifted_test, target, reference, {**counts, "shift": shift.to_dict()})


def images_only(labeled: Path, dst: Path) -> Path:
    """A folder of links to `labeled`'s images without their masks: an unlabeled target."""
    for image in first_tiles(labeled, None):
        link = dst / "images" / image.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(image.resolve())
    return dst


def real_pair(setting: str, args: argparse.Namespace, work: Path) -> Domains:
    """The two-region pair one way or the other: labeled source, test scenes of the other region,
    the other region's unlabeled images, and its labeled training scenes for the reference rows."""
    root = args.dubai
    if setting == "dubai":
        source, test, reference = root / "source" / "train", root / "target" / "test", root / "target" / "train"
        target = root / "target" / "unlabeled"
    else:
        source, test, reference = root / "target" / "train", root / "source" / "test", root / "source" / "train"
        target = images_only(reference, work / setting / "unlabeled")
    counts = {
        "train_tiles": len(first_tiles(source, None)),
        "test_tiles": len(first_tiles(test, None)),
        "target_images": len(list((target / "images").glob("*.tif"))),
        "direction": f"{source.parent.name}/{source.name} -> {test.parent.name}/{test.name}",
    }
    return Domains(source, test, target, reference, counts)


def band_names(folder: Path) -> tuple[str, ...]:
    """The bands every row reads (all of them, as `adapt` without --bands), named as on the first tile."""
    from cegate_cli.data.bands import resolve_bands

    return resolve_bands(None, first_tiles(folder, 1)[0]).names


# --------------------------------------------------------------------------- baselines


def read_scene(path: Path, indexes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(H*W, C) raw band values and (H, W) valid pixels, read by predict's own SceneReader so a
    baseline sees exactly the bands and the nodata that cegate's prediction sees."""
    import rasterio

    from cegate_cli.data.stats import BandStats
    from cegate_cli.predict.reader import SceneReader
    from cegate_cli.predict.tiling import Tile

    identity = BandStats(tuple(f"b{i}" for i in indexes), (0.0,) * len(indexes), (1.0,) * len(indexes))
    with rasterio.open(path) as ds:
        whole = Tile(0, 0, 0, 0, 0, ds.height, ds.width, ds.height, ds.width, (True, True, True, True))
        pixels, valid = SceneReader(ds, path, indexes, identity).read(whole)
    return pixels.reshape(len(indexes), -1).T, valid


def read_labels(pair: Any, ignore_index: int) -> np.ndarray:
    import rasterio

    if pair.warp_mask:
        raise ValueError(f"{pair.mask}: on another grid than its image; the benchmark reads masks on the image grid only")
    with rasterio.open(pair.mask) as ds:
        labels = ds.read(1).astype(np.int64)
    if pair.mask_nodata is not None:
        labels[labels == pair.mask_nodata] = ignore_index
    return labels


def fit_pixel(source: Path, seed: int, per_tile: int) -> tuple[GaussianPixelClassifier, int]:
    """The pixel classifier fitted on up to `per_tile` labeled pixels of every training tile, and the
    majority class of all training labels."""
    from cegate_cli.data.bands import bands_for_images
    from cegate_cli.data.folder import discover_labeled

    folder = discover_labeled(source)
    table = folder.class_table
    _, indexes = bands_for_images(None, list(folder.images))
    features, labels = [], []
    for i, (pair, idx) in enumerate(zip(folder.pairs, indexes)):
        x, valid = read_scene(pair.image, idx)
        y = read_labels(pair, table.ignore_index).ravel()
        usable = np.flatnonzero(valid.ravel() & (y != table.ignore_index))
        take = np.random.default_rng([seed, i]).choice(usable, size=min(per_tile, usable.size), replace=False)
        features.append(x[take])
        labels.append(y[take])
    model = GaussianPixelClassifier.fit(np.concatenate(features), np.concatenate(labels), table.num_classes)
    counts = {k: n for k, n in folder.label_counts.items() if k != table.ignore_index}
    return model, max(counts, key=counts.__getitem__)


def score_baseline(predict: Callable[[np.ndarray], np.ndarray], test: Path, source: Path, scratch: Path) -> Any:
    """Map every test tile with `predict` ((n, C) band values -> (n,) class ids), write the map as a
    mask GeoTIFF like `predict` does (nodata 255), and score it with `evaluate_scene`: the path
    `evaluate_run` scores cegate's maps with."""
    import rasterio

    from cegate_cli.data.bands import bands_for_images, match_bands
    from cegate_cli.data.folder import discover_labeled
    from cegate_cli.data.metrics import ConfusionMatrix, evaluate_scene
    from cegate_cli.predict.writer import NODATA

    choice, _ = bands_for_images(None, list(discover_labeled(source).images))
    folder = discover_labeled(test)
    table = folder.class_table
    matrix = ConfusionMatrix(table.num_classes, table.ignore_index)
    scratch.mkdir(parents=True, exist_ok=True)
    for pair in folder.pairs:
        x, valid = read_scene(pair.image, match_bands(choice, pair.image))
        classes = np.where(valid, predict(x).reshape(valid.shape), NODATA).astype(np.uint8)
        mapped = scratch / f"{pair.image.stem}.mask.tif"
        with rasterio.open(pair.image) as ds:
            profile = {
                "driver": "GTiff",
                "width": ds.width,
                "height": ds.height,
                "count": 1,
                "dtype": "uint8",
                "crs": ds.crs,
                "transform": ds.transform,
                "nodata": NODATA,
            }
        with rasterio.open(mapped, "w", **profile) as out:
            out.write(classes, 1)
        evaluate_scene(mapped, pair.mask, num_classes=table.num_classes, ignore_index=table.ignore_index, matrix=matrix)
    return matrix, table


def to_source_units(source: Path, target: Path, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Target band values -> source units, matching each domain's mean and std per band with the
    library's statistics (what `adapt --target` does for its model with `--target-norm target`)."""
    from cegate_cli.data.bands import bands_for_images
    from cegate_cli.data.folder import discover_labeled
    from cegate_cli.data.stats import compute_band_stats
    from cegate_cli.train.target_data import discover_target, target_stats

    images = list(discover_labeled(source).images)
    choice, indexes = bands_for_images(None, images)
    src = compute_band_stats(images, list(indexes), choice.names, seed=seed)
    tgt = target_stats(discover_target(target, choice), choice, seed)
    scale = np.asarray(src.std) / np.asarray(tgt.std)
    return lambda x: (x - np.asarray(tgt.mean)) * scale + np.asarray(src.mean)


def baseline_records(setting: str, seed: int, domains: Domains, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """`majority` and `pixel`; with an unlabeled target also `pixel+target` (each domain standardised
    with its own statistics); with target labels `pixel-reference` (fitted on them)."""
    scratch = work / "maps" / setting / f"seed{seed}"

    def scored(row: str, predict: Callable[[np.ndarray], np.ndarray], source: Path, fit_s: float, parameters: int) -> dict[str, Any]:
        started = time.perf_counter()
        matrix, table = score_baseline(predict, domains.test, source, scratch / row)
        return record(setting, row, seed, domains, matrix, table, fit_s, time.perf_counter() - started, parameters, None)

    started = time.perf_counter()
    model, majority = fit_pixel(domains.source, seed, args.pixel_samples)
    fit_s = time.perf_counter() - started
    records = [
        scored("majority", lambda x: np.full(len(x), majority), domains.source, 0.0, 0),
        scored("pixel", model.predict, domains.source, fit_s, model.parameter_count),
    ]
    if domains.target is not None:
        started = time.perf_counter()
        convert = to_source_units(domains.source, domains.target, seed)
        records.append(
            scored("pixel+target", lambda x: model.predict(convert(x)), domains.source, fit_s + time.perf_counter() - started, model.parameter_count)
        )
    if domains.reference is not None:
        started = time.perf_counter()
        reference, _ = fit_pixel(domains.reference, seed, args.pixel_samples)
        records.append(scored("pixel-reference", reference.predict, domains.reference, time.perf_counter() - started, reference.parameter_count))
    return records


# --------------------------------------------------------------------------- cegate runs


@dataclass(frozen=True)
class CegateRun:
    rule: str
    mode: str
    """"source-only", "self-training" (with the unlabeled target) or "reference" (trained on target labels)."""
    backbone: str
    decoder: str
    modules: tuple[tuple[str, int], ...] = ()
    """The oracle study's runs: only these modules are candidates (rule all trains them all)."""
    label: str = ""
    """The oracle study's row names ("only lora@3", "oracle"); empty: the rule's own row."""

    @property
    def row(self) -> str:
        return (self.label or self.rule) + MODE_SUFFIX[self.mode]  # the names real_table.py labels and pairs by


def oracle_singles(depth: int, backbone: str, decoder: str) -> list[CegateRun]:
    """The oracle study's runs of one seed: the head with each single module (issue 12)."""
    from cegate_cli.toolbox.module_key import KINDS

    return [CegateRun("all", "source-only", backbone, decoder, ((kind, layer),), f"only {kind}@{layer}") for layer in range(depth) for kind in KINDS]


def oracle_set(records: list[dict[str, Any]], count: int, backbone: str, decoder: str) -> CegateRun:
    """The oracle's set of `count` modules: the largest single-module gains over the head alone,
    measured on the test tiles of this seed (what no rule can see: the upper bound of selection)."""
    head = next(r["miou"] for r in records if r["row"] == "none" and r["backbone"] == backbone and r["decoder"] == decoder)
    gains = {
        tuple(r["modules"][0]): r["miou"] - head for r in records if r["row"].startswith("only ") and r["backbone"] == backbone and r["decoder"] == decoder
    }
    best = sorted(gains, key=lambda key: -gains[key])[:count]
    return CegateRun("all", "source-only", backbone, decoder, tuple(sorted(best, key=lambda k: (k[1], k[0]))), "oracle")


def plan(domains: Domains, args: argparse.Namespace) -> list[CegateRun]:
    """Every cegate run of one setting and seed, in the order they are run (a target-stats row is
    scored from its source-only run, right after it: see `target_stats_record`)."""
    modes = ["source-only"] if domains.target is None else [m for m in args.target_modes if m != "target-stats"]
    runs = [CegateRun(rule, mode, backbone, decoder) for backbone in args.backbone for decoder in args.decoder for mode in modes for rule in args.rules]
    if domains.reference is not None:
        runs += [CegateRun(rule, "reference", backbone, decoder) for backbone in args.backbone for decoder in args.decoder for rule in args.reference_rules]
    return runs


VARIANTS = ("fisher-warmup", "fisher-kaiming", "fisher-rescore")
"""Rows that are the fisher rule with one library option changed (issue 12): head_warmup = steps/10,
ToolboxConfig.earth_init = "kaiming", reselect_every = 100 (the paper rescored every 100 iterations
in domain generalisation, every 50 in adaptation)."""


def train_config(args: argparse.Namespace, seed: int, decoder: str, rule: str, fixed_set: bool = False) -> TrainConfig:
    """TrainConfig's defaults (what `adapt` users get) except what the benchmark varies; state is
    saved only at the end (a benchmark run is never resumed) and warm-up fits short smoke runs.
    `fixed_set`: an oracle run, whose candidates are exactly the modules it trains, so it selects
    them all ("1.0"); `--select 6` would ask for 6 of its 1 candidate and be refused."""
    config = replace(
        TrainConfig(),
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        select="1.0" if fixed_set else args.select,
        seed=seed,
        loss=args.loss,
        rare_crops=args.rare_crops,
        class_weight_power=args.class_weight_power,
        illumination=args.illumination,
        calibrate=args.calibrate,
        val_crops=args.val_crops,
        device=args.device,
        decoder=decoder,
        selection="fisher" if rule in VARIANTS else rule,
        save_every=args.steps,
        warmup_steps=None,  # derived again for these steps (a tenth, at most 25), as `adapt --steps` does
    )
    if rule == "fisher-warmup":
        config = replace(config, head_warmup=max(1, args.steps // 10))
    if rule == "fisher-rescore":
        config = replace(config, reselect_every=100)
    return config


SELF_TRAINING_EARLIER = {"adapt_schedule": "joint", "adapt_steps": None, "target_norm": "target", "guard": False, "source_batch": True}
"""Self-training settings that became options after records were first written, with the value
those records trained with: a self-training record lists the ones it differs in."""


def self_training_config(args: argparse.Namespace) -> SelfTrainConfig:
    return SelfTrainConfig(
        prior_alignment=args.prior_alignment,
        schedule=args.adapt_schedule,
        adapt_steps=args.adapt_steps,
        target_norm=args.target_norm,
        guard=args.guard,
        source_batch=args.source_batch,
    )


def toolbox_config(rule: str, kinds: str | None = None) -> ToolboxConfig:
    """The toolbox of a cegate row: the default kinds, or `--kinds` (a comma list, e.g. "lora,prompt")."""
    chosen = tuple(kinds.split(",")) if kinds else None
    return ToolboxConfig(kinds=chosen, earth_init="kaiming") if rule == "fisher-kaiming" else ToolboxConfig(kinds=chosen)


def run_folder(work: Path, setting: str, seed: int, run: CegateRun) -> Path:
    return work / "runs" / setting / run.backbone / run.decoder / f"seed{seed}" / run.row


def evaluated(run_dir: Path, domains: Domains, args: argparse.Namespace, weights: str = "best") -> tuple[Any, Any, float]:
    """`evaluate_run` on the test tiles: (evaluation, loaded run, seconds). A failed tile stops
    the benchmark: it would silently score the row on other pixels than the rest."""
    from cegate_cli.pipelines.inference import MapOptions, evaluate_run

    started = time.perf_counter()
    evaluation, loaded = evaluate_run(run_dir, domains.test, options=MapOptions(device=args.device, weights=weights))
    if evaluation.failed:
        raise RuntimeError(f"{run_dir}: {len(evaluation.failed)} test tile(s) failed: {evaluation.failed[:3]}")
    return evaluation, loaded, time.perf_counter() - started


def trained_parameters(parameters: Any, rule: str) -> int:
    """What a run trained (a `ParameterRecord`): the head and its modules (full fine-tuning: the head and the backbone)."""
    return int(parameters.decoder + (parameters.backbone if rule == "full" else parameters.modules_trained))


class TrainedRuns:
    """The source-only runs trained in this process, by labeled source folder, seed and run.

    naip-shift trains on the very train tiles naip does, with the same settings; training is
    deterministic on a seed, so a source-only run it asks for is the run naip already trained,
    scored again on its own (shifted) test tiles: the same weights for seconds instead of
    minutes, and the two settings' rows pair on identical models."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, int, CegateRun], tuple[Path, dict[str, Any]]] = {}

    @staticmethod
    def _key(domains: Domains, seed: int, run: CegateRun) -> tuple[str, int, CegateRun]:
        return str(domains.source.resolve()), seed, run

    def find(self, domains: Domains, seed: int, run: CegateRun) -> tuple[Path, dict[str, Any]] | None:
        """(run folder, how it trained: see cegate_record), or None where this run must be trained."""
        return self._runs.get(self._key(domains, seed, run)) if run.mode == "source-only" else None

    def add(self, domains: Domains, seed: int, run: CegateRun, run_dir: Path, entry: dict[str, Any]) -> None:
        if run.mode == "source-only":
            self._runs[self._key(domains, seed, run)] = (run_dir, entry)

    def folder(self, work: Path, setting: str, seed: int, run: CegateRun, domains: Domains) -> Path:
        """Where `run` of this setting and seed lies: its own folder, or the one it was scored from."""
        found = self.find(domains, seed, run)
        return found[0] if found else run_folder(work, setting, seed, run)


def cegate_record(setting: str, seed: int, run: CegateRun, domains: Domains, args: argparse.Namespace, work: Path, trained: TrainedRuns) -> dict[str, Any]:
    from cegate_cli.pipelines.adapt import AdaptOptions, adapt

    found = trained.find(domains, seed, run)
    if found is not None:
        return rescored_record(setting, seed, run, domains, args, *found)
    run_dir = run_folder(work, setting, seed, run)
    started = time.perf_counter()
    result = adapt(
        AdaptOptions(
            source=domains.reference if run.mode == "reference" else domains.source,
            out=run_dir,
            backbone=run.backbone,
            train=train_config(args, seed, run.decoder, run.rule, fixed_set=bool(run.modules)),
            toolbox=toolbox_config(run.rule, args.kinds),
            only_modules=run.modules or None,
            **({"kinds": tuple(args.kinds.split(","))} if args.kinds else {}),
            target=domains.target if run.mode == "self-training" else None,
            overwrite=True,
            self_training=self_training_config(args),
            galileo=GalileoOptions(patch_size=args.patch_size),
        )
    )
    train_s = time.perf_counter() - started
    evaluation, loaded, scored = evaluated(run_dir, domains, args)
    count = trained_parameters(result.manifest.parameters, run.rule)
    entry = record(setting, run.row, seed, domains, evaluation.matrix, loaded.manifest.classes, train_s, scored, count, run, args)
    last = result.outcome.selections[-1]
    how = {  # how the run trained: a record that rescores it elsewhere carries the same
        "selected": [f"{kind}@{layer}" for kind, layer in last.selected],
        "select_count": result.manifest.select_count,
        "depth": result.manifest.backbone.depth,
    }
    if last.scores.normalized:  # the scores the oracle study correlates with the single-module gains
        how["scores"] = {f"{kind}@{layer}": value for (kind, layer), value in last.scores.normalized.items()}
    if run.modules:
        how["modules"] = [list(key) for key in run.modules]
    entry.update(how)
    guard = result.manifest.adaptation.guard if result.manifest.adaptation is not None else None
    if guard is not None:  # what the guard kept, and what the other model would have scored
        entry["guard"] = guard
        if guard["kept"] == "source":
            adapted, _, _ = evaluated(run_dir, domains, args, weights="last")
            entry["adapted"] = {
                "miou": adapted.matrix.to_dict(loaded.manifest.classes)["miou"],
                "iou": {c["name"]: c["iou"] for c in adapted.matrix.to_dict(loaded.manifest.classes)["classes"]},
            }
        print(
            f"  guard kept the {guard['kept']} model"
            + (f" (adapted: {entry['adapted']['miou']:.4f})" if "adapted" in entry else "")
            + f"; {'; '.join(guard['reasons'])}; shares {guard['source_shares']} -> {guard['adapted_shares']}, agreement "
            f"{guard['agreement']}, source val {guard['source_val_miou']} -> {guard['adapted_val_miou']}",
            file=sys.stderr,
            flush=True,
        )
    trained.add(domains, seed, run, run_dir, {**how, "train_seconds": entry["train_seconds"], "trained_parameters": count, "trained_in": setting})
    return entry


def rescored_record(setting: str, seed: int, run: CegateRun, domains: Domains, args: argparse.Namespace, run_dir: Path, how: dict[str, Any]) -> dict[str, Any]:
    """A run another setting trained on the same source (see TrainedRuns), scored on this
    setting's test tiles: `how` it trained (its selection, training seconds and parameters, and
    `trained_in`, the setting that trained it) as cegate_record stored it."""
    evaluation, loaded, scored = evaluated(run_dir, domains, args)
    entry = record(
        setting, run.row, seed, domains, evaluation.matrix, loaded.manifest.classes, how["train_seconds"], scored, how["trained_parameters"], run, args
    )
    return {**entry, **how}


def target_stats_record(
    setting: str, seed: int, run: CegateRun, domains: Domains, args: argparse.Namespace, work: Path, trained: TrainedRuns
) -> dict[str, Any]:
    """The source-only run, its target read with the target folder's own band statistics: a copy
    of the run whose run.json holds the statistics `adapt --target` would store, scored as
    `evaluate` scores it. It separates what renormalisation alone gives from what self-training
    adds (the `+target` row has both). Galileo under its authors' normalisation does not use the
    data's statistics, so there this row equals source-only."""
    import shutil

    from cegate_cli.backbone.family import normalizes_with_own_statistics
    from cegate_cli.run.manifest import read_manifest, write_manifest
    from cegate_cli.train.target_data import discover_target, target_stats

    assert domains.target is not None
    stats_run = replace(run, mode="target-stats")
    run_dir = run_folder(work, setting, seed, stats_run)
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(trained.folder(work, setting, seed, run, domains), run_dir)
    started = time.perf_counter()
    manifest = read_manifest(run_dir)
    if normalizes_with_own_statistics(manifest.backbone.inputs):
        manifest.normalization = target_stats(discover_target(domains.target, manifest.bands), manifest.bands, seed)
        write_manifest(run_dir, manifest)
    restat_s = time.perf_counter() - started
    evaluation, loaded, scored = evaluated(run_dir, domains, args)
    return record(
        setting,
        stats_run.row,
        seed,
        domains,
        evaluation.matrix,
        loaded.manifest.classes,
        restat_s,
        scored,
        trained_parameters(loaded.manifest.parameters, run.rule),
        stats_run,
        args,
    )


# --------------------------------------------------------------------------- records and the main loop


def record(
    setting: str,
    row: str,
    seed: int,
    domains: Domains,
    matrix: Any,
    table: Any,
    train_s: float,
    eval_s: float,
    parameters: int,
    run: CegateRun | None,
    args: argparse.Namespace | None = None,
) -> dict[str, Any]:
    """One row x seed as JSON: ConfusionMatrix's own summary plus what produced it."""
    scores = matrix.to_dict(table)
    entry = {
        "setting": setting,
        "row": row,
        "seed": seed,
        "data": domains.data,
        "backbone": run.backbone if run else None,
        "decoder": run.decoder if run else None,
        "rule": run.rule if run else None,
        "mode": run.mode if run else "baseline",
        "train": (
            {
                "steps": args.steps,
                "batch_size": args.batch_size,
                "crop": args.crop,
                "lr": args.lr,
                "select": args.select,
                "loss": args.loss,
                "rare_crops": args.rare_crops,
                **{name: getattr(args, name) for name in EARLIER_TRAIN if getattr(args, name) != EARLIER_TRAIN[name]},
                **({"prior_alignment": True} if args.prior_alignment else {}),
                **(
                    {name: getattr(args, name) for name in SELF_TRAINING_EARLIER if getattr(args, name) != SELF_TRAINING_EARLIER[name]}
                    if run.mode == "self-training"
                    else {}
                ),
                **({"patch_size": args.patch_size} if args.patch_size else {}),
            }
            if run and args
            else None
        ),
        "miou": scores["miou"],
        "accuracy": scores["overall_accuracy"],
        "pixels": scores["pixels"],
        "iou": {c["name"]: c["iou"] for c in scores["classes"]},
        "train_seconds": round(train_s, 2),
        "eval_seconds": round(eval_s, 2),
        "trained_parameters": parameters,
    }
    print(
        f"{setting} {row} seed {seed}"
        + (f" [{run.backbone}/{run.decoder}]" if run else "")
        + f": mIoU {entry['miou']:.4f}, accuracy {entry['accuracy']:.4f}, {train_s:.0f} s train + {eval_s:.0f} s eval",
        file=sys.stderr,
        flush=True,
    )
    return entry


def machine(args: argparse.Namespace) -> str:
    return f"{cpu_name()} ({os.cpu_count()} CPUs visible), {args.threads} torch threads, device {args.device}, {platform.system()}"


def check_backbones(specs: list[str]) -> None:
    """Resolve every backbone before the first run, so a misspelt or unreachable spec fails in
    seconds instead of after the baselines and the runs of the other backbones."""
    from cegate_cli.backbone.hub import resolve_backbone
    from cegate_cli.errors import InputError

    for spec in specs:
        try:
            resolve_backbone(spec)
        except InputError as exc:
            raise SystemExit(f"--backbone {spec}: {exc}") from exc


def measure(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Run every setting x seed x row; the JSON is rewritten after each run so a cut-off run keeps its numbers."""
    started, clock = _dt.datetime.now().isoformat(timespec="minutes"), time.perf_counter()
    saved: dict[str, Any] = {
        "command": command,
        "started": started,
        "machine": machine(args),
        "threads": args.threads,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "load_start": os.getloadavg()[0],
        "args": {k: str(v) for k, v in vars(args).items()},
        "records": [],
    }

    def save() -> None:
        saved.update(load_end=os.getloadavg()[0], minutes=(time.perf_counter() - clock) / 60)
        if args.json is not None:
            from cegate_cli.infra.atomic import write_text_atomic

            write_text_atomic(args.json, json.dumps(saved, indent=1))

    check_backbones(args.backbone)
    trained = TrainedRuns()
    with tempfile.TemporaryDirectory(prefix="cegate-bench-real-") as scratch:
        work = args.work or Path(scratch)
        for setting in args.settings:
            for seed in args.seeds:
                domains = prepare(setting, seed, args, work)
                for entry in baseline_records(setting, seed, domains, args, work):
                    saved["records"].append(entry)
                save()
                runs = plan(domains, args)
                for run in runs:
                    saved["records"].append(cegate_record(setting, seed, run, domains, args, work, trained))
                    save()
                    if run.mode == "source-only" and domains.target is not None and "target-stats" in args.target_modes:
                        saved["records"].append(target_stats_record(setting, seed, run, domains, args, work, trained))
                        save()
                if args.oracle and domains.target is None:
                    oracle_runs(setting, seed, domains, args, work, saved, save, trained)
    save()
    return saved


def oracle_runs(
    setting: str, seed: int, domains: Domains, args: argparse.Namespace, work: Path, saved: dict[str, Any], save: Callable[[], None], trained: TrainedRuns
) -> None:
    """--oracle: the head alone (unless a row ran it), each single module, then the oracle's set."""
    from cegate_cli.toolbox.fisher import parse_select
    from cegate_cli.toolbox.module_key import KINDS

    for backbone in args.backbone:
        for decoder in args.decoder:
            here = [r for r in saved["records"] if r["seed"] == seed and r["setting"] == setting and r["backbone"] == backbone and r["decoder"] == decoder]
            if not any(r["row"] == "none" for r in here):
                here.append(cegate_record(setting, seed, CegateRun("none", "source-only", backbone, decoder), domains, args, work, trained))
                saved["records"].append(here[-1])
                save()
            for run in oracle_singles(here[-1]["depth"], backbone, decoder):
                here.append(cegate_record(setting, seed, run, domains, args, work, trained))
                saved["records"].append(here[-1])
                save()
            count = parse_select(args.select, here[-1]["depth"] * len(KINDS))  # what fisher and random select
            saved["records"].append(cegate_record(setting, seed, oracle_set(here, count, backbone, decoder), domains, args, work, trained))
            save()


def merge(paths: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All records of several --json files, a later file's row replacing an earlier one's; and the
    files' headers (command, machine, load averages) for the generated block."""
    merged: dict[tuple, dict[str, Any]] = {}
    headers = []
    for path in paths:
        saved = json.loads(path.read_text(encoding="utf-8"))
        headers.append({k: v for k, v in saved.items() if k != "records"})
        for entry in saved["records"]:
            key = (
                entry["setting"],
                entry["row"],
                entry["seed"],
                entry["backbone"],
                entry["decoder"],
                json.dumps(entry["data"], sort_keys=True),
                json.dumps(entry["train"], sort_keys=True),
            )
            merged[key] = entry
    return list(merged.values()), headers


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.from_json is not None:
        records, headers = merge(args.from_json)
    else:
        command = "python benchmarks/bench_real.py " + " ".join(sys.argv[1:] if argv is None else argv)
        saved = measure(args, command)
        records, headers = saved["records"], [{k: v for k, v in saved.items() if k != "records"}]
    lines = render_block(records, headers, args.note)
    print("\n".join(lines))
    if args.out is not None:
        replace_block(args.out, BLOCK, lines, "# Benchmarks on real imagery\n\n")


if __name__ == "__main__":
    main()
