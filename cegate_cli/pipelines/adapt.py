"""`adapt` as a library call: labeled folder (and/or unlabeled target) + backbone -> a run folder.

Three modes, one entry point:
- "supervised": a labeled source folder.
- "source+target": a labeled source and an unlabeled target folder (DACS self-training).
- "target": an earlier run continued on an unlabeled target folder, no labels at all.

Order matters for the user: everything that can be wrong with the data or the options is
checked before the backbone is downloaded or any training starts, and everything that can be
checked at all (crop against the patch size included) is checked before the run folder is locked
and, with --overwrite, the old run in it is replaced. A run folder has one writer at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from cegate_cli.backbone.family import normalizes_with_own_statistics
from cegate_cli.backbone.hub import resolve_backbone
from cegate_cli.backbone.registry import family_of
from cegate_cli.data.bands import bands_for_images
from cegate_cli.data.coverage import class_coverage, coverage_warnings
from cegate_cli.data.crops import Augment, CropSampler
from cegate_cli.data.folder import ImageContents, ImagePair, check_image_contents, discover_labeled
from cegate_cli.data.stats import BandStats, compute_band_stats
from cegate_cli.errors import InputError, RunFolderError
from cegate_cli.infra import distributed
from cegate_cli.infra.progress import phase
from cegate_cli.infra.words import counted
from cegate_cli.model.segmentation import build_model
from cegate_cli.options.adapt import AdaptOptions
from cegate_cli.options.train import SelfTrainConfig, TrainConfig
from cegate_cli.pipelines.adapt_record import Fitting, fit_and_record
from cegate_cli.run import (
    AdaptationRecord,
    BackboneRecord,
    BandCopy,
    DataRecord,
    RunManifest,
    backbone_parameter_count,
    check_run_dir,
    load_run,
    read_manifest,
    resolve_device,
    state_dir,
)
from cegate_cli.toolbox import KINDS
from cegate_cli.toolbox.fisher import parse_select
from cegate_cli.toolbox.module_key import ModuleKey, keys_to_json
from cegate_cli.train.ddp import for_world
from cegate_cli.train.losses import balanced_class_weights
from cegate_cli.train.reporter import SilentReporter, TrainReporter
from cegate_cli.train.selftrain import SelfTrainer, TargetInputs
from cegate_cli.train.supervised import SupervisedTrainer, TrainInputs, TrainOutcome
from cegate_cli.train.target_data import TargetFolder, discover_target, target_stats

MODES = ("supervised", "source+target", "target")
# The teacher labels a weak view: geometry only, no radiometric jitter (the strong view has that).
WEAK_VIEW = Augment(flips=True, rotations=True, gain=0.0, offset=0.0)


@dataclass
class AdaptResult:
    run_dir: Path
    manifest: RunManifest
    outcome: TrainOutcome
    warnings: list[str]
    notes: list[str] = field(default_factory=list)
    """What the run did that is no problem (an alpha-tagged band read as data): not warnings."""


def split_validation(pairs: Sequence[ImagePair], fraction: float, seed: int) -> tuple[list[ImagePair], list[ImagePair]]:
    """Hold out whole images (never crops of training images) so validation measures generalisation."""
    if fraction <= 0 or len(pairs) < 2:
        return list(pairs), []
    count = min(len(pairs) - 1, max(1, round(fraction * len(pairs))))
    order = np.random.default_rng(seed).permutation(len(pairs))
    held = set(int(i) for i in order[:count])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def adapt(options: AdaptOptions, reporter: TrainReporter | None = None, stop_after: int | None = None) -> AdaptResult:
    reporter = (reporter or SilentReporter()) if distributed.is_main() else SilentReporter()  # torchrun: rank 0 reports
    mode = options.check()
    device = resolve_device(options.train.device)
    distributed.check_on_main(check_run_dir, options.out, overwrite=options.overwrite, resume=options.resume)
    started = time.perf_counter()
    if mode == "target":
        fitting = _fitting_from_run(options, reporter, device)
    else:
        fitting = _fitting_from_source(options, reporter, device, mode)
    outcome = fit_and_record(
        options.out,
        fitting,
        overwrite=options.overwrite,
        resume=options.resume,
        saved_config=options.saved_config,
        stop_after=stop_after,
        started=started,
    )
    return AdaptResult(Path(options.out), fitting.manifest, outcome, fitting.warnings, fitting.notes)


def _fitting_from_source(options: AdaptOptions, reporter: TrainReporter, device: torch.device, mode: str) -> Fitting:
    """Modes "supervised" and "source+target": a model built on a labeled source folder."""
    config = options.train
    assert options.source is not None
    folder = discover_labeled(options.source, classes_file=options.classes_file, ignore_index=options.ignore_index, align=options.align)
    warnings = list(folder.warnings)
    for warning in warnings:
        reporter.message(f"warning: {warning}")
    if folder.inferred_classes_note is not None:
        reporter.message(folder.inferred_classes_note)
    table = folder.class_table
    choice, per_image = bands_for_images(options.bands, [pair.image for pair in folder.pairs])
    target = discover_target(options.target, choice, source=options.source) if options.target is not None else None
    contents = check_image_contents(folder.images, per_image, config.crop, options.source)
    found = list(contents.warnings)
    notes = list(contents.notes)
    found += coverage_warnings(class_coverage(table, folder.label_counts, folder.label_images), len(folder.pairs))
    if target is not None:
        target, target_contents = _usable_target(target, config.crop)
        found += target_contents.warnings
        notes += target_contents.notes
    warnings += found  # shown once the crop size is known to be usable (a refused --crop is the one line then)
    indexes_of = {pair.image: idx for pair, idx in zip(folder.pairs, per_image)}
    usable = [pair for pair in folder.pairs if pair.image not in contents.empty]
    train_pairs, val_pairs = split_validation(usable, config.val_fraction, config.seed)
    if not val_pairs and config.val_fraction > 0:
        warnings.append("only one labeled image: no validation split, the run keeps the last weights as best")
        reporter.message(f"warning: {warnings[-1]}")

    run_dir = Path(options.out)  # prepared (locked, emptied for --overwrite) only once everything is checked
    recorded = _check_resumed_mode(run_dir, options, mode)
    with phase(reporter, f"loading the backbone {options.backbone}"):
        source = resolve_backbone(options.backbone, revision=options.revision, token=options.token, offline=options.offline)
        family = family_of(source)
        pretrained = family.load(source)
    family_options = options.family_options.get(family.name)
    pretrained.check_run(choice.names, family_options)  # before the crop is checked against the patch, and any pixel read
    patch = pretrained.patch_size(family_options)
    _check_crop(config.crop, patch)
    options.toolbox.check_width(pretrained.embed_dim)
    _say(reporter, found, notes)

    with phase(reporter, f"band statistics of {counted(len(train_pairs), 'image')}"):
        stats = compute_band_stats([p.image for p in train_pairs], [indexes_of[p.image] for p in train_pairs], choice.names, seed=config.seed)
    fitted = pretrained.fit_inputs(family_options, [p.image for p in train_pairs], stats)
    stats, family_inputs = fitted.stats, fitted.inputs
    warnings += fitted.warnings
    notes += fitted.notes
    _say(reporter, fitted.warnings, fitted.notes)
    built = build_model(
        pretrained,
        choice.names,
        table.num_classes,
        options.toolbox,
        decoder=config.decoder,
        seed=config.seed,
        normalization=stats,
        inputs=family_inputs,
    )
    _check_kinds_built(built.toolbox.keys(), options)
    candidates = _candidates(built.toolbox.keys(), options)
    select_count = _select_count(config, candidates)
    weights = balanced_class_weights(folder.label_counts, table.num_classes, power=config.class_weight_power)  # loss and rare-class crops
    loss_weights = None if config.loss == "ce" else weights
    sampler = CropSampler(
        train_pairs,
        [indexes_of[p.image] for p in train_pairs],
        stats,
        config.crop,
        table.ignore_index,
        augment=Augment(illumination=config.illumination) if config.augment else False,
        rare_class_weights=weights.tolist() if config.rare_crops > 1 else None,
        candidates=config.rare_crops,
    )
    validation = []
    if val_pairs:
        val_sampler = CropSampler(val_pairs, [indexes_of[p.image] for p in val_pairs], stats, config.crop, table.ignore_index, augment=False)
        windows = val_sampler.fixed_windows(config.val_crops, config.seed)
        validation = [val_sampler.read(windows[i : i + config.batch_size]) for i in range(0, len(windows), config.batch_size)]
        val_sampler.close()

    manifest = RunManifest(
        backbone=BackboneRecord(
            source=source,
            architecture=pretrained.architecture,
            pretrained_bands=tuple(pretrained.band_names) if pretrained.band_names else None,
            band_mapping=tuple(
                BandCopy(band, pretrained.band_names[i] if (i is not None and pretrained.band_names) else i)
                for band, i in zip(built.band_mapping.target_bands, built.band_mapping.source_channel)
            ),
            patch_size=patch,
            embed_dim=built.model.backbone.embed_dim,
            depth=built.model.backbone.depth,
            parameters=backbone_parameter_count(built.toolbox),
            family=family.record(built.model.backbone, family_inputs),
        ),
        bands=choice,
        normalization=stats,
        classes=table,
        toolbox=options.toolbox,
        training=config,
        kinds=tuple(options.kinds),
        select_count=select_count,
        mode=mode,
        data=DataRecord(
            source=str(Path(options.source).resolve()),
            train_images=tuple(str(p.image) for p in train_pairs),
            val_images=tuple(str(p.image) for p in val_pairs),
            warnings=tuple(warnings),
            notes=tuple(notes),
            label_pixels={str(k): int(v) for k, v in sorted(folder.label_counts.items())},
            label_images={str(k): int(v) for k, v in sorted(folder.label_images.items())},
            class_weights=None if loss_weights is None else tuple(round(float(w), 4) for w in loss_weights),
        ),
    )
    if recorded is not None:
        manifest.run_id = recorded.run_id  # a resumed run stays the same run
    inputs = TrainInputs(
        built.model,
        built.toolbox,
        sampler,
        validation,
        table,
        config,
        device,
        select_count,
        tuple(options.kinds),
        class_weights=loss_weights,
        keep_best=target is None,
        candidates=candidates,
    )
    target_sampler = source_view = None
    if target is None:
        trainer: SupervisedTrainer = for_world(SupervisedTrainer)(inputs, state_dir(run_dir), reporter)
    else:
        self_config = options.self_training
        own_stats = self_config.target_norm in ("target", "auto") and normalizes_with_own_statistics(family_inputs)
        if own_stats:
            with phase(reporter, f"band statistics of {counted(len(target.images), 'target image')}"):
                tstats = target_stats(target, choice, config.seed)
        else:
            tstats = stats
        manifest.normalization = tstats  # predict maps target scenes: it must normalise them as training did
        manifest.data = manifest.data.with_target(*_target_data(target))
        manifest.adaptation = _adaptation_section(mode, target, self_config, source_stats=stats, from_run=None, kept=[])
        target_sampler = CropSampler(target.images, target.band_indexes, tstats, config.crop, table.ignore_index, augment=WEAK_VIEW)
        if own_stats and self_config.target_norm == "auto" and self_config.schedule == "source-first":  # the trainer chooses
            source_view = CropSampler(target.images, target.band_indexes, stats, config.crop, table.ignore_index, augment=WEAK_VIEW)
        prior = _class_prior(folder.label_counts, table.num_classes)
        trainer = for_world(SelfTrainer)(
            inputs, TargetInputs(target_sampler, sampler, self_config, prior=prior, source_view=source_view), state_dir(run_dir), reporter
        )
    return Fitting(trainer, manifest, candidates, warnings, [sampler] + [s for s in (target_sampler, source_view) if s is not None], notes)


def _fitting_from_run(options: AdaptOptions, reporter: TrainReporter, device: torch.device) -> Fitting:
    """Mode "target": the earlier run's model, teacher-student self-training on the target only."""
    assert options.from_run is not None and options.target is not None
    earlier = read_manifest(options.from_run)
    if earlier.status != "complete":
        raise RunFolderError(f"--from {options.from_run}: that run has not finished (status {earlier.status!r}); resume it first")
    # The head comes from the earlier run; there are no labels to validate on.
    config = replace(options.train, decoder=earlier.training.decoder, val_fraction=0.0)
    self_config = options.self_training
    target = discover_target(options.target, earlier.bands)
    if Path(options.from_run).resolve() == Path(options.out).resolve():
        raise InputError(f"-o {options.out} is the run given to --from; write the continued run to another folder")
    target, contents = _usable_target(target, config.crop)
    warnings, notes = list(contents.warnings), list(contents.notes)
    run_dir = Path(options.out)
    recorded = _check_resume_mode_from(run_dir, options)
    with phase(reporter, f"loading the run {options.from_run}"):
        loaded = load_run(options.from_run, device=config.device, weights="best", offline=options.offline, token=options.token)
    model, toolbox = loaded.model, loaded.toolbox
    _check_crop(config.crop, model.backbone.patch_size)
    _say(reporter, warnings, notes)
    kept = list(toolbox.active_keys)
    candidates = _candidates(toolbox.keys(), options)
    if not candidates:
        raise InputError(
            f"--modules {','.join(options.kinds)}: the run {options.from_run} has no such modules (its toolbox holds {', '.join(earlier.toolbox.kinds)})"
        )
    select_count = _select_count(config, candidates)
    table = earlier.classes
    tstats = earlier.normalization
    if self_config.target_norm in ("target", "auto"):  # auto needs a source phase to judge: as target here
        with phase(reporter, f"band statistics of {counted(len(target.images), 'target image')}"):
            tstats = target_stats(target, earlier.bands, config.seed)
    manifest = RunManifest(
        backbone=earlier.backbone,
        bands=earlier.bands,
        normalization=tstats,
        classes=table,
        toolbox=earlier.toolbox,
        training=config,
        kinds=tuple(k for k in KINDS if any(c[0] == k for c in candidates)),
        select_count=select_count,
        mode="target",
        data=DataRecord(from_run=str(Path(options.from_run).resolve()), warnings=tuple(warnings), notes=tuple(notes)).with_target(*_target_data(target)),
    )
    if recorded is not None:
        manifest.run_id = recorded.run_id
    manifest.adaptation = _adaptation_section("target", target, self_config, source_stats=earlier.normalization, from_run=options.from_run, kept=kept)
    target_sampler = CropSampler(target.images, target.band_indexes, tstats, config.crop, table.ignore_index, augment=WEAK_VIEW)
    inputs = TrainInputs(
        model,
        toolbox,
        target_sampler,
        [],
        table,
        config,
        device,
        select_count,
        manifest.kinds,
        keep_best=False,
        candidates=candidates,
    )
    prior = _class_prior(earlier.data.label_counts, table.num_classes)
    trainer = for_world(SelfTrainer)(inputs, TargetInputs(target_sampler, None, self_config, tuple(kept), prior=prior), state_dir(run_dir), reporter)
    return Fitting(trainer, manifest, candidates, warnings, [target_sampler], notes)


def _say(reporter: TrainReporter, warnings: Sequence[str], notes: Sequence[str]) -> None:
    """What the checks found, warnings first: one line each, as "warning: ..." and "note: ..."."""
    for warning in warnings:
        reporter.message(f"warning: {warning}")
    for note in notes:
        reporter.message(f"note: {note}")


def _select_count(config: TrainConfig, candidates: list[ModuleKey]) -> int:
    """How many modules the run selects, as run.json and `inspect` report it: `--select` of the
    candidates (refused where it asks for more than exist), except that rule all trains every
    candidate whatever `--select` says, so its count is theirs (it read "5 modules" for 18)."""
    count = parse_select(config.select, len(candidates))
    return len(candidates) if config.selection == "all" else count


def _check_kinds_built(keys: list[ModuleKey], options: AdaptOptions) -> None:
    """Every kind the selection may choose from is in the toolbox the run builds (a library caller
    may set `AdaptOptions.kinds` and `ToolboxConfig.kinds` apart; `--modules` sets both)."""
    built = sorted({kind for kind, _ in keys})
    absent = [kind for kind in options.kinds if kind not in built]
    if absent:
        raise InputError(
            f"module kinds {', '.join(absent)} are not in the toolbox this run builds ({', '.join(built)}); "
            "name the same kinds in AdaptOptions.kinds and ToolboxConfig.kinds (on the command line --modules sets both)"
        )


def _candidates(keys: list[ModuleKey], options: AdaptOptions) -> list[ModuleKey]:
    """The modules a selection may choose from; every module `only_modules` names must exist."""
    if options.only_modules is not None:
        missing = sorted({tuple(key) for key in options.only_modules} - {tuple(key) for key in keys})
        if missing:
            layers = sorted({layer for _, layer in keys})
            raise InputError(
                f"modules {', '.join(f'{k}@{l}' for k, l in missing)} do not exist in this toolbox "
                f"(blocks {layers[0]}-{layers[-1]}, kinds {', '.join(sorted({k for k, _ in keys}))})"
            )
    listed = None if options.only_modules is None else {tuple(key) for key in options.only_modules}
    return [key for key in keys if key[0] in options.kinds and (listed is None or tuple(key) in listed)]


def _usable_target(target: TargetFolder, crop: int) -> tuple[TargetFolder, ImageContents]:
    """The target folder without images that have no valid pixel, and what its check found (the
    warnings and notes about it)."""
    contents = check_image_contents(target.images, target.band_indexes, crop, target.root)
    kept = [(image, idx) for image, idx in zip(target.images, target.band_indexes) if image not in contents.empty]
    usable = replace(target, images=tuple(i for i, _ in kept), band_indexes=tuple(b for _, b in kept))
    return usable, contents


def _class_prior(label_counts: dict[int, int], num_classes: int) -> torch.Tensor | None:
    """Class shares of the source labels (None when unknown, e.g. runs from older versions)."""
    counts = torch.tensor([float(label_counts.get(c, 0)) for c in range(num_classes)])
    return counts / counts.sum() if float(counts.sum()) > 0 else None


def _check_crop(crop: int, patch: int) -> None:
    if crop % patch:
        raise InputError(f"--crop {crop} is not a multiple of the backbone's patch size {patch}; try {max(patch, crop // patch * patch)}")


def _check_resumed_mode(run_dir: Path, options: AdaptOptions, mode: str) -> RunManifest | None:
    """`--resume` must continue the same kind of run (the resume state alone cannot tell).
    Returns the interrupted run's record (None without --resume)."""
    if not options.resume:
        return None
    recorded = read_manifest(run_dir)
    if recorded.mode != mode:
        raise RunFolderError(
            f"{run_dir} holds an interrupted {recorded.mode!r} run, but these options start a {mode!r} run; "
            "resume it with its own options, or start over with --overwrite"
        )
    return recorded


def _check_resume_mode_from(run_dir: Path, options: AdaptOptions) -> RunManifest | None:
    recorded = _check_resumed_mode(run_dir, options, "target")
    if recorded is not None:
        continued = recorded.data.from_run
        if continued and Path(continued) != Path(options.from_run or "").resolve():
            raise RunFolderError(f"{run_dir} continued {continued}, not {options.from_run}; resume it with the same --from")
    return recorded


def _target_data(target: TargetFolder) -> tuple[str, tuple[str, ...]]:
    """run.json's data on the target: its folder and images."""
    return str(target.root.resolve()), tuple(str(p) for p in target.images)


def _adaptation_section(
    mode: str, target: TargetFolder, config: SelfTrainConfig, *, source_stats: BandStats, from_run: Path | None, kept: list
) -> AdaptationRecord:
    return AdaptationRecord(
        mode=mode,
        target=str(target.root.resolve()),
        target_images=len(target.images),
        from_run=str(Path(from_run).resolve()) if from_run is not None else None,
        kept_modules=tuple(keys_to_json(kept)),
        normalization=config.target_norm,
        source_normalization=source_stats,
        self_training=config,
        weights="last step: without target labels no step can be judged best",
    )
