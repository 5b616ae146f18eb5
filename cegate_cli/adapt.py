"""`adapt` as a library call: labeled folder + backbone spec -> a finished run folder.

Order matters for the user: everything that can be wrong with the data or the options is
checked before the backbone is downloaded or any training starts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cegate_cli.backbone.load import load_pretrained_vit
from cegate_cli.bands import bands_for_images
from cegate_cli.data.crops import CropSampler
from cegate_cli.data.folder import ImagePair, discover_labeled
from cegate_cli.data.stats import compute_band_stats
from cegate_cli.errors import InputError
from cegate_cli.fisher import parse_select
from cegate_cli.hub import resolve_backbone
from cegate_cli.loaded_run import resolve_device
from cegate_cli.model import build_model
from cegate_cli.run import (
    ADAPTER_BEST,
    ADAPTER_LAST,
    RunManifest,
    prepare_run_dir,
    save_weights,
    state_path,
    write_manifest,
)
from cegate_cli.toolbox import KINDS, ToolboxConfig
from cegate_cli.train.config import TrainConfig
from cegate_cli.train.reporter import SilentReporter, TrainReporter
from cegate_cli.train.supervised import SupervisedTrainer, TrainInputs, TrainOutcome


@dataclass(frozen=True)
class AdaptOptions:
    source: Path
    out: Path
    backbone: str = "dinov2-small"
    revision: str | None = None
    token: str | None = None
    offline: bool | None = None
    bands: str | None = None
    classes_file: Path | None = None
    ignore_index: int | None = None
    align: bool = False
    kinds: tuple[str, ...] = KINDS
    toolbox: ToolboxConfig = field(default_factory=ToolboxConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    overwrite: bool = False
    resume: bool = False


@dataclass
class AdaptResult:
    run_dir: Path
    manifest: RunManifest
    outcome: TrainOutcome
    warnings: list[str]


def split_validation(pairs: Sequence[ImagePair], fraction: float, seed: int) -> tuple[list[ImagePair], list[ImagePair]]:
    """Hold out whole images (never crops of training images) so validation measures generalisation."""
    if fraction <= 0 or len(pairs) < 2:
        return list(pairs), []
    count = min(len(pairs) - 1, max(1, round(fraction * len(pairs))))
    order = np.random.default_rng(seed).permutation(len(pairs))
    held = set(int(i) for i in order[:count])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def adapt(options: AdaptOptions, reporter: TrainReporter | None = None, stop_after: int | None = None) -> AdaptResult:
    reporter = reporter or SilentReporter()
    config = options.train
    started = time.perf_counter()
    folder = discover_labeled(options.source, classes_file=options.classes_file, ignore_index=options.ignore_index, align=options.align)
    warnings = list(folder.warnings)
    for warning in warnings:
        reporter.message(f"warning: {warning}")
    table = folder.class_table
    choice, per_image = bands_for_images(options.bands, [pair.image for pair in folder.pairs])
    indexes_of = {pair.image: idx for pair, idx in zip(folder.pairs, per_image)}
    train_pairs, val_pairs = split_validation(folder.pairs, config.val_fraction, config.seed)
    if not val_pairs and config.val_fraction > 0:
        warnings.append("only one labeled image: no validation split, the run keeps the last weights as best")
        reporter.message(f"warning: {warnings[-1]}")

    run_dir = prepare_run_dir(options.out, overwrite=options.overwrite, resume=options.resume)
    source = resolve_backbone(options.backbone, revision=options.revision, token=options.token, offline=options.offline)
    pretrained = load_pretrained_vit(source)
    patch = int(pretrained.vit.patch_embed.patch_size[0])
    if config.crop % patch:
        raise InputError(f"--crop {config.crop} is not a multiple of the backbone's patch size {patch}; try {max(patch, config.crop // patch * patch)}")

    stats = compute_band_stats(
        [p.image for p in train_pairs], [indexes_of[p.image] for p in train_pairs], choice.names, seed=config.seed
    )
    built = build_model(pretrained, choice.names, table.num_classes, options.toolbox, decoder=config.decoder, seed=config.seed)
    device = resolve_device(config.device)
    sampler = CropSampler(train_pairs, [indexes_of[p.image] for p in train_pairs], stats, config.crop, table.ignore_index, augment=config.augment)
    validation = []
    if val_pairs:
        val_sampler = CropSampler(val_pairs, [indexes_of[p.image] for p in val_pairs], stats, config.crop, table.ignore_index, augment=False)
        windows = val_sampler.fixed_windows(config.val_crops, config.seed)
        validation = [val_sampler.read(windows[i : i + config.batch_size]) for i in range(0, len(windows), config.batch_size)]
        val_sampler.close()
    candidates = [key for key in built.toolbox.keys() if key[0] in options.kinds]
    select_count = parse_select(config.select, len(candidates))

    backbone_params = sum(p.numel() for name, p in built.model.backbone.named_parameters() if ".lora_" not in name and "bottleneck" not in name and not name.startswith("frequency."))
    manifest = RunManifest(
        backbone={
            "source": source.to_dict(),
            "architecture": pretrained.architecture,
            "pretrained_bands": list(pretrained.band_names) if pretrained.band_names else None,
            "band_mapping": [
                {"band": band, "copied_from": (pretrained.band_names[i] if (i is not None and pretrained.band_names) else i)}
                for band, i in zip(built.band_mapping.target_bands, built.band_mapping.source_channel)
            ],
            "patch_size": patch,
            "embed_dim": built.model.backbone.embed_dim,
            "depth": built.model.backbone.depth,
            "parameters": backbone_params,
        },
        bands=choice,
        normalization=stats,
        classes=table,
        toolbox=options.toolbox,
        training=config,
        kinds=tuple(options.kinds),
        select_count=select_count,
        data={
            "source": str(Path(options.source).resolve()),
            "train_images": [str(p.image) for p in train_pairs],
            "val_images": [str(p.image) for p in val_pairs],
            "warnings": warnings,
        },
    )
    write_manifest(run_dir, manifest)

    trainer = SupervisedTrainer(
        TrainInputs(built.model, built.toolbox, sampler, validation, table, config, device, select_count, tuple(options.kinds)),
        state_path(run_dir),
        reporter,
    )
    try:
        outcome = trainer.fit(resume=options.resume, stop_after=stop_after)
    finally:
        sampler.close()

    manifest.selections = outcome.selections
    manifest.ever_selected = outcome.ever_selected
    manifest.best_selection = outcome.best_selection
    modules_trained = sum(built.toolbox.parameter_count(k) for k in outcome.ever_selected)
    modules_final = sum(built.toolbox.parameter_count(k) for k in outcome.final_selection)
    decoder_params = sum(p.numel() for p in built.model.decoder.parameters())
    manifest.parameters = {
        "backbone": backbone_params,
        "candidates": sum(built.toolbox.parameter_count(k) for k in candidates),
        "modules_trained": modules_trained,
        "modules_final": modules_final,
        "decoder": decoder_params,
        "trainable_share": (modules_trained + decoder_params) / backbone_params,
    }
    manifest.metrics = {
        "best_val_miou": outcome.best_miou,
        "best_step": outcome.best_step,
        "last_val_miou": outcome.val_history[-1][1] if outcome.val_history else None,
        "val_history": outcome.val_history,
        "final_loss": outcome.loss_history[-1][1] if outcome.loss_history else None,
        "loss_history": outcome.loss_history[:: max(1, len(outcome.loss_history) // 200)],
    }
    manifest.timing = {
        "fisher_seconds": round(outcome.fisher_seconds, 3),
        "train_seconds": round(outcome.train_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "device": str(device),
    }
    if outcome.completed:
        save_weights(run_dir / ADAPTER_LAST, outcome.last_weights)
        save_weights(run_dir / ADAPTER_BEST, outcome.best_weights)
        manifest.status = "complete"
    write_manifest(run_dir, manifest)
    return AdaptResult(run_dir, manifest, outcome, warnings)
