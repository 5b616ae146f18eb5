"""`cegate inspect`: which modules were selected, in which layers, and why (or a backbone's candidates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cegate_cli.backbone.registry import get_family
from cegate_cli.commands.console import stderr, stdout
from cegate_cli.commands.options import JsonOpt, OfflineOpt, RevisionOpt, TokenOpt, offline_flag
from cegate_cli.errors import InputError
from cegate_cli.toolbox.kinds import kind_names


def register(app: typer.Typer) -> None:
    @app.command(name="inspect")
    def inspect_command(
        run: Annotated[Optional[Path], typer.Argument(help="A run folder written by `cegate adapt`.", show_default=False)] = None,
        backbone: Annotated[Optional[str], typer.Option("--backbone", "-b", help="Show a backbone and its candidate modules instead of a run.")] = None,
        revision: RevisionOpt = None,
        token: TokenOpt = None,
        offline: OfflineOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Show which modules a run selected, in which layers, and why; or a backbone's candidate modules."""
        from cegate_cli.reporting.report import backbone_report, run_report
        from cegate_cli.run.replaced import stopped_overwrite_note

        if (run is None) == (backbone is None):
            raise InputError("give either a run folder or --backbone SPEC")
        if backbone is not None:
            report = backbone_report(backbone, revision=revision, token=token, offline=offline_flag(offline))
            if as_json:
                stdout.print_json(json.dumps(report))
            else:
                render_backbone(report)
            return
        assert run is not None
        report = run_report(run)
        if as_json:
            stdout.print_json(json.dumps(report))
        else:
            render_run(report)
        stopped = stopped_overwrite_note(run)
        if stopped is not None:
            stderr.print(f"warning: {stopped}", markup=False)


def _backbone_lines(info: dict[str, Any]) -> list[str]:
    source = info.get("source", {})
    revision = source.get("revision") or "-"
    sha = source.get("weights_sha256") or "-"
    return [
        f"backbone   {source.get('spec', info.get('spec'))}  ({info.get('architecture')})",
        f"source     {source.get('kind')}  {source.get('repo_id') or source.get('local_dir') or ''}  revision {revision}",
        f"weights    sha256 {sha}",
        f"shape      depth {info.get('depth')}, width {info.get('embed_dim')}, patch {info.get('patch_size')}, {info.get('parameters', 0):,} parameters",
    ]


def render_backbone(report: dict[str, Any]) -> None:
    info = report["backbone"]
    for line in _backbone_lines(info):
        stdout.print(escape(line))
    stdout.print(f"bands      {', '.join(info['bands']) if info.get('bands') else 'unnamed'}")
    stdout.print(f"features   from blocks {', '.join(map(str, info['feature_layers']))}")
    table = Table(title="candidate modules (parameters, share of the backbone)", box=box.SIMPLE_HEAD)
    table.add_column("layer", justify="right")
    kinds = [k for k in kind_names() if any(m["kind"] == k for m in report["candidates"])]
    for kind in kinds:
        table.add_column(f"{kind}\n{report['kinds'][kind].split(' (')[0]}", justify="right")
    by_key = {(m["kind"], m["layer"]): m for m in report["candidates"]}
    for layer in sorted({m["layer"] for m in report["candidates"]}):
        cells = []
        for kind in kinds:
            m = by_key.get((kind, layer))
            cells.append(f"{m['parameters']:,} ({m['share_of_backbone']:.2%})" if m else "-")
        table.add_row(str(layer), *cells)
    stdout.print(table)
    total = report["candidates_total"]
    stdout.print(f"all candidates together: {total['parameters']:,} parameters ({total['share_of_backbone']:.2%} of the backbone)")


def unfinished_line(report: dict[str, Any]) -> str:
    """What a run that did not complete holds, and how to finish it."""
    return (
        f"status     not finished ({report['status']}): its selection, scores and metrics are recorded when it completes; "
        f"continue it from its last saved step with `cegate adapt --config {report['run']}/config.yaml --resume` "
        "(or its own command with --resume)"
    )


def render_run(report: dict[str, Any]) -> None:
    stdout.print(escape(f"run        {report['run']}  ({report['status']}, {report['mode']}, cegate {report['cegate_version']})"))
    unfinished = report["status"] != "complete"
    if unfinished:
        stdout.print(escape(unfinished_line(report)))
    info = dict(report["backbone"])
    for line in _backbone_lines(info):
        stdout.print(escape(line))
    mapping = info.get("band_mapping") or []
    family = get_family(info["source"]["kind"])
    section = info.get(family.record_key) if family.record_key else None
    described = [f"{m['band']}<-{m['copied_from']}" if m["copied_from"] is not None else f"{m['band']}<-{family.unmatched_band}" for m in mapping]
    stdout.print(f"bands      {', '.join(described) if described else ', '.join(report['bands']['names'])}")
    for line in family.describe(family.read_record(section)) if section else []:
        stdout.print(escape(line))
    classes = report["classes"]
    swatches = "  ".join(f"[rgb({c['color'][0]},{c['color'][1]},{c['color'][2]})]■[/] {c['id']} {c['name']}" for c in classes["classes"])
    stdout.print(f"classes    {swatches}   (ignore {classes['ignore_index']})")

    adaptation = report.get("adaptation") or {}
    if adaptation:
        render_adaptation_header(adaptation)
    scores = report["scores"]
    if scores:
        from cegate_cli.reporting.report import NOT_SCORED, describe_unscored  # report.py loads torch: not at CLI start-up

        kinds = [k for k in kind_names() if any(s["kind"] == k for s in scores)]
        kept = sum(1 for s in scores if s.get("kept"))
        legend = f"* = selected, {report['select_count']} of {len(scores)}"
        if kept:
            legend = f"* = chosen on the target, {report['select_count']} of {len(scores)}; k = kept from the earlier run"
        what = "Scores (squared mean gradient)" if report["compute"]["rule"] == "fisher-agree" else "Fisher scores"
        table = Table(title=f"{what} at step {report['score_step']} (normalised per kind; {legend})", box=box.SIMPLE_HEAD)
        table.add_column("layer", justify="right")
        for kind in kinds:
            table.add_column(kind, justify="right")
        by_key = {(s["kind"], s["layer"]): s for s in scores}
        for layer in sorted({s["layer"] for s in scores}):
            cells = []
            for kind in kinds:
                s = by_key.get((kind, layer))
                if s is None:
                    cells.append("")
                elif s["score"] is None:  # below the rule's cost cut: never scored, not a score of 0
                    cells.append(f"[dim]{NOT_SCORED}   [/]")
                elif s.get("kept"):
                    cells.append(f"[bold green]{s['score']:.2f} {'k*' if s.get('chosen') else 'k '}[/]")
                elif s["selected"]:
                    cells.append(f"[bold green]{s['score']:.2f} *[/]")
                else:
                    cells.append(f"[dim]{s['score']:.2f}  [/]")
            table.add_row(str(layer), *cells)
        stdout.print(table)
        unscored = describe_unscored(scores, report["compute"]["rule"])
        if unscored:
            stdout.print(escape(unscored))

    params = report["parameters"]
    if params:
        trained = params.get("modules_trained", 0) + params.get("decoder", 0)
        stdout.print(
            f"parameters trained {trained:,} (modules {params.get('modules_trained', 0):,} + head {params.get('decoder', 0):,}) "
            f"vs backbone {params.get('backbone', 0):,}: {params.get('trainable_share', 0):.2%}"
        )
    compute = report.get("compute")
    if compute and compute.get("depth") and not (unfinished and not report["history"]):  # no selection recorded yet: no compute to tell
        from cegate_cli.reporting.report import describe_compute, describe_rule  # report.py loads torch: not at CLI start-up

        stdout.print(escape(f"rule       {compute['rule']}: {describe_rule(compute['rule'])}"))
        stdout.print(escape(f"compute    {describe_compute(compute)}"))
    if len(report["history"]) > 1:
        stdout.print("selection over time:")
        for event in report["history"]:
            change = ""
            if event["added"] or event["removed"]:
                change = f"  (+{', '.join(event['added']) or '-'}  -{', '.join(event['removed']) or '-'})"
            chosen = ", ".join(event["selected"]) or (
                "no module: the head trains alone before the first scoring" if event.get("rule") == "head-warmup" else "no module (head only)"
            )
            stdout.print(f"  step {event['step']:>6}: {chosen}{change}")
    if adaptation.get("pseudo_labels"):
        render_pseudo_labels(adaptation)
    metrics = report["metrics"]
    if metrics:
        best = metrics.get("best_val_miou")
        last = metrics.get("last_val_miou")
        loss = metrics.get("final_loss")
        parts = []
        if best is not None:
            from cegate_cli.reporting.report import describe_best

            parts.append(str(describe_best(metrics)))
        if last is not None:
            parts.append(f"last {last:.3f}" if best is not None else f"{metrics.get('validation') or 'val'} mIoU at the last step {last:.3f}")
        if loss is not None:
            parts.append(f"final loss {loss:.3f}")
        stdout.print(f"metrics    {'; '.join(parts) if parts else 'no validation'}")
        if metrics.get("calibration"):
            from cegate_cli.reporting.report import describe_calibration

            stdout.print(escape(f"calibrated {describe_calibration(metrics['calibration'], report['classes'])}"))
    timing = report["timing"]
    if timing.get("total_seconds"):
        stdout.print(
            f"time       {timing['total_seconds']:.1f}s total, Fisher scoring {timing.get('fisher_seconds', 0):.1f}s "
            f"({timing.get('fisher_share', 0):.1%}), on {timing.get('device')}"
            + (f" x {timing['processes']} processes (torchrun)" if timing.get("processes", 1) > 1 else "")
        )


def render_adaptation_header(adaptation: dict[str, Any]) -> None:
    """Where a self-trained run adapted to, and from what."""
    stdout.print(escape(f"target     {adaptation['target']}  ({adaptation['target_images']} unlabeled images)"))
    if adaptation.get("from_run"):
        kept = ", ".join(adaptation["kept_modules"]) or "none"
        stdout.print(escape(f"from run   {adaptation['from_run']}  (its modules kept and trained on: {kept})"))
    settings = adaptation.get("settings", {})
    teacher = adaptation.get("teacher_bytes")
    teacher_text = f"; teacher holds {teacher / 1e6:.2f} MB (trained tensors only)" if teacher else ""
    stdout.print(
        f"self-train {adaptation['mode']}: EMA {settings.get('ema')}, confidence > {settings.get('confidence')}, "
        f"target normalised with {adaptation.get('normalization')} statistics{teacher_text}"
    )
    if adaptation.get("guard"):
        stdout.print(escape(f"guard      {adaptation.get('weights')}"))
    if adaptation.get("prototypes"):
        stdout.print(escape(f"prototypes {adaptation['prototypes'].get('sentence')}"))


def render_pseudo_labels(adaptation: dict[str, Any], max_rows: int = 12) -> None:
    """The pseudo-labels over time: confident share, weight, and what the teacher says the target is."""
    history = adaptation["pseudo_labels"]
    if len(history) > max_rows:
        picks = sorted({round(i * (len(history) - 1) / (max_rows - 1)) for i in range(max_rows)})
        history = [history[i] for i in picks]
    names = list(history[0]["class_share"])
    table = Table(title="pseudo-labels on target crops (class shares of valid pixels)", box=box.SIMPLE_HEAD)
    for column in ("step", "confident", "weight", *names):
        table.add_column(escape(column), justify="right")
    for entry in history:
        table.add_row(
            str(entry["step"]),
            f"{entry['confident_share']:.1%}",
            f"{entry['mean_weight']:.2f}",
            *(f"{entry['class_share'][n]:.2f}" for n in names),
        )
    stdout.print(table)
