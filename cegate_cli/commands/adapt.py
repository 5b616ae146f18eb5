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
from typer.core import TyperCommand

from cegate_cli.backbone.galileo_options import DEFAULT_PATCH_SIZE, GalileoOptions
from cegate_cli.commands import adapt_config
from cegate_cli.commands.console import stdout
from cegate_cli.commands.feedback import Feedback, QuietOpt, ThreadsOpt, VerboseOpt
from cegate_cli.commands.options import DeviceOpt, JsonOpt, OfflineOpt, RevisionOpt, TokenOpt, in_panel
from cegate_cli.commands.registered_flags import kind_size_flags, with_flags
from cegate_cli.infra.option_fields import help_of
from cegate_cli.options.adapt import AdaptOptions
from cegate_cli.options.train import SelfTrainConfig, TrainConfig

DATA = "Data"
MODEL = "Model and toolbox"
SELECTION = "Selection"
TRAINING = "Training"
ADAPTATION = "Adaptation (--target)"
RUN = "Output and run"
PANELS = (DATA, MODEL, SELECTION, TRAINING, ADAPTATION, RUN)
"""`adapt --help`'s panels, in the order it shows them: each option's `rich_help_panel`. The
declarations below follow this order (Typer lists panels as their first option comes); a config
file keeps its own order (adapt_config.FILE_ORDER)."""


class AdaptCommand(TyperCommand):
    """`adapt`'s click command: `--help` itself is listed under RUN, with the other options about
    the invocation, instead of alone in a panel of its own."""

    def get_help_option(self, ctx: typer.Context) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.rich_help_panel = RUN  # type: ignore[attr-defined]
        return option


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
    *,
    # -- Data
    source: Annotated[Optional[Path], typer.Argument(help=help_of(AdaptOptions, "source"), show_default=False)] = None,
    bands: Annotated[Optional[str], typer.Option("--bands", help=help_of(AdaptOptions, "bands"), rich_help_panel=DATA)] = None,
    classes: Annotated[Optional[Path], typer.Option("--classes", help=help_of(AdaptOptions, "classes_file"), rich_help_panel=DATA)] = None,
    ignore_index: Annotated[Optional[int], typer.Option("--ignore-index", help=help_of(AdaptOptions, "ignore_index"), rich_help_panel=DATA)] = None,
    align: Annotated[bool, typer.Option("--align", help=help_of(AdaptOptions, "align"), rich_help_panel=DATA)] = AdaptOptions.align,
    # -- Model and toolbox
    backbone: Annotated[
        Optional[str],
        typer.Option("--backbone", "-b", help=help_of(AdaptOptions, "backbone"), show_default=AdaptOptions.backbone, rich_help_panel=MODEL),
    ] = None,
    revision: Annotated[Optional[str], in_panel(RevisionOpt, MODEL)] = None,
    token: Annotated[Optional[str], in_panel(TokenOpt, MODEL)] = None,
    offline: Annotated[bool, in_panel(OfflineOpt, MODEL)] = False,
    modules: Annotated[str, typer.Option("--modules", help=help_of(AdaptOptions, "kinds"), rich_help_panel=MODEL)] = "all",
    decoder: Annotated[str, typer.Option("--decoder", help=help_of(TrainConfig, "decoder"), rich_help_panel=MODEL)] = TrainConfig.decoder,
    # (each toolbox kind's size flags come here: with_flags below)
    patch_size: Annotated[
        Optional[int],
        typer.Option("--patch-size", help=help_of(GalileoOptions, "patch_size"), show_default=str(DEFAULT_PATCH_SIZE), rich_help_panel=MODEL),
    ] = None,
    month: Annotated[Optional[int], typer.Option("--month", help=help_of(GalileoOptions, "month"), show_default=False, rich_help_panel=MODEL)] = None,
    normalize: Annotated[str, typer.Option("--normalize", help=help_of(GalileoOptions, "normalize"), rich_help_panel=MODEL)] = GalileoOptions.normalize,
    # -- Selection
    selection: Annotated[str, typer.Option("--selection", help=help_of(TrainConfig, "selection"), rich_help_panel=SELECTION)] = TrainConfig.selection,
    select: Annotated[str, typer.Option("--select", help=help_of(TrainConfig, "select"), rich_help_panel=SELECTION)] = TrainConfig.select,
    fisher_samples: Annotated[
        int, typer.Option("--fisher-samples", help=help_of(TrainConfig, "fisher_samples"), rich_help_panel=SELECTION)
    ] = TrainConfig.fisher_samples,
    reselect_every: Annotated[
        int, typer.Option("--reselect-every", help=help_of(TrainConfig, "reselect_every"), rich_help_panel=SELECTION)
    ] = TrainConfig.reselect_every,
    # -- Training
    steps: Annotated[int, typer.Option("--steps", help=help_of(TrainConfig, "steps"), rich_help_panel=TRAINING)] = TrainConfig.steps,
    batch_size: Annotated[int, typer.Option("--batch-size", help=help_of(TrainConfig, "batch_size"), rich_help_panel=TRAINING)] = TrainConfig.batch_size,
    crop: Annotated[int, typer.Option("--crop", help=help_of(TrainConfig, "crop"), rich_help_panel=TRAINING)] = TrainConfig.crop,
    lr: Annotated[float, typer.Option("--lr", help=help_of(TrainConfig, "lr"), rich_help_panel=TRAINING)] = TrainConfig.lr,
    seed: Annotated[int, typer.Option("--seed", help=help_of(TrainConfig, "seed"), rich_help_panel=TRAINING)] = TrainConfig.seed,
    device: Annotated[str, in_panel(DeviceOpt, TRAINING)] = TrainConfig.device,
    loss: Annotated[str, typer.Option("--loss", help=help_of(TrainConfig, "loss"), rich_help_panel=TRAINING)] = TrainConfig.loss,
    class_weight_power: Annotated[
        float, typer.Option("--class-weight-power", help=help_of(TrainConfig, "class_weight_power"), rich_help_panel=TRAINING)
    ] = TrainConfig.class_weight_power,
    rare_crops: Annotated[int, typer.Option("--rare-crops", help=help_of(TrainConfig, "rare_crops"), rich_help_panel=TRAINING)] = TrainConfig.rare_crops,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help=help_of(TrainConfig, "augment"), rich_help_panel=TRAINING)] = TrainConfig.augment,
    illumination: Annotated[
        float, typer.Option("--illumination", help=help_of(TrainConfig, "illumination"), rich_help_panel=TRAINING)
    ] = TrainConfig.illumination,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help=help_of(TrainConfig, "val_fraction"), rich_help_panel=TRAINING)
    ] = TrainConfig.val_fraction,
    val_every: Annotated[int, typer.Option("--val-every", help=help_of(TrainConfig, "val_every"), rich_help_panel=TRAINING)] = TrainConfig.val_every,
    calibrate: Annotated[
        bool, typer.Option("--calibrate/--no-calibrate", help=help_of(TrainConfig, "calibrate"), rich_help_panel=TRAINING)
    ] = TrainConfig.calibrate,
    save_every: Annotated[int, typer.Option("--save-every", help=help_of(TrainConfig, "save_every"), rich_help_panel=TRAINING)] = TrainConfig.save_every,
    # -- Adaptation (--target)
    target: Annotated[Optional[Path], typer.Option("--target", help=help_of(AdaptOptions, "target"), show_default=False, rich_help_panel=ADAPTATION)] = None,
    from_run: Annotated[Optional[Path], typer.Option("--from", help=help_of(AdaptOptions, "from_run"), show_default=False, rich_help_panel=ADAPTATION)] = None,
    adapt_schedule: Annotated[
        str, typer.Option("--adapt-schedule", help=help_of(SelfTrainConfig, "schedule"), rich_help_panel=ADAPTATION)
    ] = SelfTrainConfig.schedule,
    adapt_steps: Annotated[
        Optional[int],
        typer.Option("--adapt-steps", help=help_of(SelfTrainConfig, "adapt_steps"), show_default=False, rich_help_panel=ADAPTATION),
    ] = None,
    guard: Annotated[bool, typer.Option("--guard/--no-guard", help=help_of(SelfTrainConfig, "guard"), rich_help_panel=ADAPTATION)] = SelfTrainConfig.guard,
    prototypes: Annotated[
        float, typer.Option("--prototypes", help=help_of(SelfTrainConfig, "prototypes"), rich_help_panel=ADAPTATION)
    ] = SelfTrainConfig.prototypes,
    confidence: Annotated[
        float, typer.Option("--confidence", help=help_of(SelfTrainConfig, "confidence"), rich_help_panel=ADAPTATION)
    ] = SelfTrainConfig.confidence,
    class_balance: Annotated[
        float, typer.Option("--class-balance", help=help_of(SelfTrainConfig, "class_balance"), rich_help_panel=ADAPTATION)
    ] = SelfTrainConfig.class_balance,
    prior_alignment: Annotated[
        bool,
        typer.Option("--prior-alignment/--no-prior-alignment", help=help_of(SelfTrainConfig, "prior_alignment"), rich_help_panel=ADAPTATION),
    ] = SelfTrainConfig.prior_alignment,
    ema: Annotated[float, typer.Option("--ema", help=help_of(SelfTrainConfig, "ema"), rich_help_panel=ADAPTATION)] = SelfTrainConfig.ema,
    target_norm: Annotated[
        str, typer.Option("--target-norm", help=help_of(SelfTrainConfig, "target_norm"), rich_help_panel=ADAPTATION)
    ] = SelfTrainConfig.target_norm,
    # -- Output and run
    out: Annotated[Path, typer.Option("--out", "-o", help=help_of(AdaptOptions, "out"), show_default=False, rich_help_panel=RUN)],
    overwrite: Annotated[bool, typer.Option("--overwrite", help=help_of(AdaptOptions, "overwrite"), rich_help_panel=RUN)] = AdaptOptions.overwrite,
    resume: Annotated[bool, typer.Option("--resume", help=help_of(AdaptOptions, "resume"), rich_help_panel=RUN)] = AdaptOptions.resume,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="YAML file of option: value lines, for any option of this command (flags on the command line win). "
            "RUN/config.yaml of an earlier run re-makes it.",
            is_eager=True,
            callback=_load_config,
            show_default=False,
            rich_help_panel=RUN,
        ),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print a YAML template with every option and its default, and exit.",
            is_eager=True,
            callback=_print_config,
            rich_help_panel=RUN,
        ),
    ] = False,
    threads: Annotated[Optional[int], in_panel(ThreadsOpt, RUN)] = None,
    as_json: Annotated[bool, in_panel(JsonOpt, RUN)] = False,
    quiet: Annotated[bool, in_panel(QuietOpt, RUN)] = False,
    verbose: Annotated[bool, in_panel(VerboseOpt, RUN)] = False,
    **registered: Any,
) -> None:
    """Select toolbox modules by Fisher information and train them on a labeled folder, with an unlabeled target, or (--from) a run's target alone."""
    feedback = Feedback.from_flags(quiet, verbose)
    adapt_config.check_from_run(ctx)
    config = adapt_config.resolved_config(ctx)  # what RUN/config.yaml records
    values = adapt_config.parameter_values(ctx.command, config)
    options = adapt_config.adapt_options(values, saved_config=config, token=token, offline=offline, overwrite=overwrite, resume=resume)
    options.check()  # a mistyped value is answered before torch loads (seconds)

    from cegate_cli.infra.distributed import is_main
    from cegate_cli.pipelines.adapt import adapt
    from cegate_cli.pipelines.results import adapt_result

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
                f"pseudo-labels at step {end['step']}: {end['confident_share']:.1%} of target pixels confident (> {adaptation.self_training.confidence})"
            )
        stdout.print(f"weights: {adaptation.weights}")


with_flags(adapt_command, kind_size_flags(), after="decoder", panel=MODEL)  # each kind's size flags (--lora-rank)


def register(app: typer.Typer) -> None:
    app.command(name="adapt", cls=AdaptCommand)(adapt_command)
