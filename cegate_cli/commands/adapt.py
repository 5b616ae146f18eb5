"""`cegate adapt`: select toolbox modules by Fisher information and train them.

    cegate adapt SOURCE -o RUN                        labeled source only
    cegate adapt SOURCE --target TARGET -o RUN        + unlabeled target (DACS self-training)
    cegate adapt --from RUN --target TARGET -o RUN2   continue RUN on the unlabeled target only
    cegate adapt --config adapt.yaml                  options from YAML (flags win); RUN/config.yaml re-makes a run
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cegate_cli.commands import adapt_config
from cegate_cli.commands.console import stdout
from cegate_cli.commands.feedback import Feedback, QuietOpt, ThreadsOpt, VerboseOpt
from cegate_cli.options.adapt import AdaptOptions
from cegate_cli.backbone.galileo_options import DEFAULT_MONTH, DEFAULT_PATCH_SIZE, GalileoOptions
from cegate_cli.data.classes import DEFAULT_IGNORE_INDEX
from cegate_cli.commands.options import DeviceOpt, JsonOpt, OfflineOpt, RevisionOpt, TokenOpt
from cegate_cli.commands.registered_flags import kind_size_flags, with_flags
from cegate_cli.toolbox.kinds import default_kind_names, kind_names
from cegate_cli.toolbox.config import ToolboxConfig
from cegate_cli.options.train import SelfTrainConfig, TrainConfig


_BACKBONE_HELP = (
    "Backbone: hf-hub:ORG/NAME or hf-hub:ORG/NAME/FOLDER for a model in a repo's folder (optionally @REVISION), a local folder, or an alias (dinov2-small|base|large, "
    "prithvi-eo-2-300m|600m|tiny, galileo-nano (embedded)|tiny|base, clay-v1, tiny). "
    "Not with --from."
)

_MODULES_HELP = (
    f"Module kinds to choose from: {', '.join(kind_names())} (comma-separated), or all: the default toolbox "
    f"({', '.join(default_kind_names())})."
)


def _load_config(ctx: typer.Context, param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """--config: the file's options become this command's defaults (adapt_config.py)."""
    return adapt_config.load_config_callback(lambda: typing.get_type_hints(adapt_command, include_extras=True))(ctx, param, value)


def _print_config(ctx: typer.Context, param: typer.CallbackParam, value: bool) -> None:
    """--print-config: the commented template on stdout, then exit."""
    if value and not ctx.resilient_parsing:
        stdout.print(adapt_config.template(ctx.command), markup=False, highlight=False)
        raise typer.Exit()


def adapt_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.", show_default=False)],
    source: Annotated[
        Optional[Path],
        typer.Argument(help="Labeled folder: images/ and masks/ with matching names (+ classes.yaml). Not with --from.", show_default=False),
    ] = None,
    target: Annotated[
        Optional[Path], typer.Option("--target", help="Unlabeled target folder (images only): self-train on it.", show_default=False)
    ] = None,
    from_run: Annotated[
        Optional[Path],
        typer.Option("--from", help="Continue this finished run on --target without any labels (no SOURCE).", show_default=False),
    ] = None,
    confidence: Annotated[
        float, typer.Option("--confidence", help="Teacher probability above which a target pixel's pseudo-label counts.")
    ] = SelfTrainConfig.confidence,
    class_balance: Annotated[
        float,
        typer.Option("--class-balance", help="Per class, this share of its most confident target pixels counts even below --confidence (0 = off)."),
    ] = SelfTrainConfig.class_balance,
    prior_alignment: Annotated[
        bool,
        typer.Option("--prior-alignment/--no-prior-alignment", help="Align the teacher's class shares to the source labels' (guards against collapse)."),
    ] = SelfTrainConfig.prior_alignment,
    ema: Annotated[float, typer.Option("--ema", help="Teacher update: teacher = ema * teacher + (1 - ema) * student.")] = SelfTrainConfig.ema,
    target_norm: Annotated[
        str, typer.Option("--target-norm", help="Normalise target images with the target folder's statistics, the source's, or "
                     "(auto) those the source model is more confident under.")
    ] = SelfTrainConfig.target_norm,
    adapt_schedule: Annotated[
        str,
        typer.Option("--adapt-schedule", help="source-first: train the source-only run, then adapt it and keep it only if the "
                     "guard finds nothing wrong; joint: DACS self-training from step 0."),
    ] = SelfTrainConfig.schedule,
    adapt_steps: Annotated[
        Optional[int],
        typer.Option("--adapt-steps", help="source-first: self-training steps after the source run (default: a quarter of --steps).",
                     show_default=False),
    ] = None,
    guard: Annotated[
        bool,
        typer.Option("--guard/--no-guard", help="source-first: keep the source model when adaptation makes a class vanish from "
                     "the target map or the source validation fall."),
    ] = SelfTrainConfig.guard,
    backbone: Annotated[Optional[str], typer.Option("--backbone", "-b", help=_BACKBONE_HELP, show_default=AdaptOptions.backbone)] = None,
    revision: RevisionOpt = None,
    token: TokenOpt = None,
    offline: OfflineOpt = False,
    bands: Annotated[Optional[str], typer.Option("--bands", help="Bands to use, in order: 1-based indexes (1,2,3) or names (red,green,blue,nir).")] = None,
    classes: Annotated[Optional[Path], typer.Option("--classes", help="classes.yaml (default: SOURCE/classes.yaml if present).")] = None,
    ignore_index: Annotated[Optional[int], typer.Option("--ignore-index", help=f"Mask value meaning 'no label' (default {DEFAULT_IGNORE_INDEX}).")] = None,
    align: Annotated[bool, typer.Option("--align", help="Warp masks onto their image's grid (nearest) when grids differ.")] = AdaptOptions.align,
    modules: Annotated[str, typer.Option("--modules", help=_MODULES_HELP)] = "all",
    select: Annotated[
        str, typer.Option("--select", help="How many modules to train: a count, written as a whole number (6), or a fraction of all candidates, written with a decimal point (0.25; 1.0 = all).")
    ] = TrainConfig.select,
    reselect_every: Annotated[int, typer.Option("--reselect-every", help="Re-score and reselect every N steps (0 = once).")] = TrainConfig.reselect_every,
    selection: Annotated[
        str,
        typer.Option(
            "--selection",
            help="fisher (the method); fisher-cost (upper half of the blocks only: a shorter backward pass), fisher-block "
            "(ranked within each block), fisher-agree (squared mean gradient); or a baseline: random (same count), random-cost "
            "(same count, fisher-cost's blocks), all, "
            "none (head only), full (whole backbone).",
        ),
    ] = TrainConfig.selection,
    loss: Annotated[
        str,
        typer.Option("--loss", help="ce, balanced (classes weighted by their rarity in the labels) or balanced+dice."),
    ] = TrainConfig.loss,
    rare_crops: Annotated[
        int, typer.Option("--rare-crops", help="Draw N candidate crops and keep the one richest in rare classes (1 = plain random crops).")
    ] = TrainConfig.rare_crops,
    class_weight_power: Annotated[
        float,
        typer.Option(
            "--class-weight-power",
            help="Exponent of the balanced class weights, (median share / class share) ** power: 0 weighs every class alike, "
            "higher favours rare classes' recall over a common class's precision.",
        ),
    ] = TrainConfig.class_weight_power,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate/--no-calibrate",
            help="After training, fit one offset per class on the validation images so no class is overpredicted "
            "(stored in the head's weights).",
        ),
    ] = TrainConfig.calibrate,
    fisher_samples: Annotated[int, typer.Option("--fisher-samples", help="Crops used to estimate the Fisher scores.")] = TrainConfig.fisher_samples,
    steps: Annotated[int, typer.Option("--steps", help="Training steps.")] = TrainConfig.steps,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Crops per step (per process).")] = TrainConfig.batch_size,
    crop: Annotated[int, typer.Option("--crop", help="Crop size in pixels (a multiple of the patch size).")] = TrainConfig.crop,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, poly decay).")] = TrainConfig.lr,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the head, crops and augmentation.")] = TrainConfig.seed,
    device: DeviceOpt = TrainConfig.device,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of images held out for validation mIoU, in [0, 1).")] = TrainConfig.val_fraction,
    val_every: Annotated[int, typer.Option("--val-every", help="Validate every N steps (0 = never).")] = TrainConfig.val_every,
    decoder: Annotated[str, typer.Option("--decoder", help="Segmentation head: linear, linear-pixel (linear plus a full-resolution per-pixel path) or unet. Not with --from.")] = TrainConfig.decoder,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Flips, rotations, band jitter.")] = TrainConfig.augment,
    illumination: Annotated[
        float, typer.Option("--illumination", help="Brightness and contrast jitter shared by all bands of a source crop (0 = off).")
    ] = TrainConfig.illumination,
    save_every: Annotated[int, typer.Option("--save-every", help="Write the resume state every N steps.")] = TrainConfig.save_every,
    patch_size: Annotated[
        Optional[int], typer.Option("--patch-size", help="Galileo: pixels per patch side, 1-8 (smaller: finer maps, slower).", show_default=str(DEFAULT_PATCH_SIZE))
    ] = None,
    month: Annotated[
        Optional[int], typer.Option("--month", help=f"Galileo: month of the imagery, 1-12 (default: from the files' date tags, else {DEFAULT_MONTH + 1}).", show_default=False)
    ] = None,
    normalize: Annotated[
        str, typer.Option("--normalize", help="Galileo: auto, pretrained (Sentinel-2 reflectance statistics) or data (the run's own).")
    ] = GalileoOptions.normalize,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")] = AdaptOptions.overwrite,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out with the same options.")] = AdaptOptions.resume,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="YAML file of option: value lines, for any option of this command (flags on the command line win). "
            "RUN/config.yaml of an earlier run re-makes it.",
            is_eager=True,
            callback=_load_config,
            show_default=False,
        ),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option("--print-config", help="Print a YAML template with every option and its default, and exit.", is_eager=True, callback=_print_config),
    ] = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    **registered: Any,
) -> None:
    """Select toolbox modules by Fisher information and train them on a labeled folder, a labeled
    folder plus an unlabeled target folder, or (--from) an earlier run on the target alone."""
    from cegate_cli.pipelines.adapt import adapt
    from cegate_cli.infra.distributed import is_main
    from cegate_cli.pipelines.results import adapt_result

    feedback = Feedback.from_flags(quiet, verbose)
    adapt_config.check_from_run(ctx)
    options = adapt_config.adapt_options(adapt_config.resolved_config(ctx), token=token, offline=offline, overwrite=overwrite, resume=resume)
    feedback.threads(threads)
    reporter = feedback.train_reporter()
    try:
        result = adapt(options, reporter)
    finally:
        reporter.finish()
    if not is_main():
        return  # under torchrun the summary is printed once, by rank 0
    if as_json:
        stdout.print_json(json.dumps(adapt_result(result)))
    else:
        _print_summary(result)
    feedback.say(f"next: cegate inspect {result.run_dir}   |   cegate predict {result.run_dir} SCENES -o OUT")


def _print_summary(result: Any) -> None:
    manifest = result.manifest
    metrics = manifest.metrics
    share = manifest.parameters.trainable_share if manifest.parameters is not None else 0.0
    best = metrics.best_val_miou if metrics is not None else None
    stdout.print(f"run folder: {result.run_dir}  ({manifest.mode})")
    stdout.print(f"selected: {', '.join(f'{k}@{l}' for k, l in manifest.final_selection)}")
    stdout.print(f"trained parameters: {share:.2%} of the backbone")
    if best is not None:
        from cegate_cli.reporting.report import describe_best

        stdout.print(str(describe_best(metrics.to_dict())))
    adaptation = manifest.adaptation
    if adaptation is not None:
        last_val = metrics.last_val_miou if metrics is not None else None
        if last_val is not None:
            stdout.print(f"source validation mIoU at the last step: {last_val:.3f} (the target has no labels to validate on)")
        if adaptation.pseudo_labels:
            end = adaptation.pseudo_labels[-1]
            stdout.print(
                f"pseudo-labels at step {end['step']}: {end['confident_share']:.1%} of target pixels confident "
                f"(> {adaptation.self_training.confidence}); the run keeps the last step's weights"
            )


with_flags(adapt_command, kind_size_flags(), after="decoder")  # each kind's size flags (--lora-rank)


def register(app: typer.Typer) -> None:
    app.command(name="adapt")(adapt_command)
