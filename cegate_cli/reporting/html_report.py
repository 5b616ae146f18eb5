"""`cegate report`: one self-contained HTML page that shows a run instead of listing it.

What `inspect` prints as tables (report.py's `run_report`, reused here) becomes pictures: the
loss and validation curves, the Fisher score grid (block x kind) with what was chosen at each
rescoring, per-class IoU and the confusion matrix when an evaluation is given, the class legend,
and a few scenes side by side with their predicted masks and labels. Everything is inline (SVG
charts drawn here, PNG previews as base64, one <style>), so the page opens offline, can be
mailed, and makes no request to any server.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from cegate_cli.data.classes import ClassTable
from cegate_cli.errors import DataFileNotFoundError, DocumentError, InputError, OutputExistsError
from cegate_cli.infra.atomic import write_text_atomic, writing
from cegate_cli.infra.documents import read_json
from cegate_cli.infra.words import counted
from cegate_cli.options.report import ReportOptions
from cegate_cli.reporting.png import png_bytes
from cegate_cli.reporting.report import NOT_SCORED, describe_best, describe_calibration, describe_compute, describe_rule, describe_unscored, run_report
from cegate_cli.reporting.report_scenes import ScenePreview, choose_scenes, scene_previews
from cegate_cli.reporting.svg_chart import ChartStyle, Marker, Series, line_chart
from cegate_cli.run import read_manifest
from cegate_cli.toolbox.kinds import kind_spec, registered_kinds
from cegate_cli.toolbox.module_key import ModuleKey

REPORT_NAME = "report.html"
GENERATOR_TAG = "<meta name='generator' content='cegate report'>"
"""In every page's head: how `report` tells a page it wrote from a file of the user's."""
HEAD_BYTES = 4096
MAX_HISTORY_COLUMNS = 24
DISPLAY_SIDE = 340
"""Longer side of each scene picture on the page, in CSS pixels (three fit side by side)."""


@dataclass(frozen=True)
class ReportResult:
    path: Path
    scenes: tuple[ScenePreview, ...]

    @property
    def problems(self) -> list[str]:
        return [scene.problem for scene in self.scenes if scene.problem]


def default_report_path(run_dir: Path) -> Path:
    return Path(run_dir) / REPORT_NAME


def is_own_report(path: Path) -> bool:
    """Whether `path` is a page `cegate report` wrote: its generator tag (or, on pages from before
    the tag, its title) in the first bytes. Such a page is a view of a run folder, so replacing
    it loses nothing; any other file may be the user's."""
    try:
        with open(path, "rb") as file:
            head = file.read(HEAD_BYTES)
    except OSError:
        return False
    return GENERATOR_TAG.encode() in head or b"<title>cegate report: " in head


def check_report_path(out: Path, *, overwrite: bool) -> None:
    """Refuse an output that is a folder, or another file than a report cegate wrote without
    `overwrite`, before any work. A report cegate wrote is replaced: rewriting RUN/report.html
    after a new evaluation should not need a flag."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"-o {out}: is a folder; give a file name such as {out / REPORT_NAME}")
    if out.exists() and not overwrite and not is_own_report(out):
        raise OutputExistsError(f"{out} already exists and is not a report cegate wrote; add --overwrite to replace it, or choose another -o")


def write_report(
    run_dir: Path, out: Path | None = None, options: ReportOptions = ReportOptions(), *, overwrite: bool = False, progress: Any = None
) -> ReportResult:
    """Build the page for `run_dir` and write it to `out` (default RUN/report.html) atomically."""
    options.check()
    out = Path(out) if out is not None else default_report_path(run_dir)
    classes = read_manifest(run_dir).classes  # a wrong run folder is named before anything else
    check_report_path(out, overwrite=overwrite)
    evaluation = load_evaluation(options.evaluation, classes) if options.evaluation else None
    scenes: list[ScenePreview] = []
    if options.scenes:  # the slow part (the model, the scenes) comes after every cheap check
        chosen = choose_scenes(options.scenes, options.max_scenes)
        scenes = scene_previews(run_dir, chosen, classes, size=options.preview_size, masks=options.masks, map_options=options.map_options, progress=progress)
    page = build_page(run_dir, evaluation, scenes)
    with writing(out, "write the report"):
        write_text_atomic(out, page)
    return ReportResult(out, tuple(scenes))


def load_evaluation(path: Path, classes: ClassTable) -> dict[str, Any]:
    """Read `cegate evaluate --json` output and check it is about this run's classes."""
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"--evaluation {path}: no such file; write one with `cegate evaluate RUN FOLDER --json > {path.name}`")
    try:
        data = read_json(path)
    except DocumentError as exc:
        raise InputError(f"--evaluation {exc}; write it with `cegate evaluate RUN FOLDER --json > {path.name}`") from None
    try:
        rows = {int(row["id"]): row for row in data["classes"]}
        matrix = data["matrix"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--evaluation {path}: not the output of `cegate evaluate --json` ({type(exc).__name__}: {exc})") from None
    theirs = {i: str(rows[i].get("name")) for i in classes.ids if i in rows}
    ours = {c.id: c.name for c in classes.classes}
    if theirs != ours or len(matrix) != classes.num_classes:
        raise InputError(
            f"--evaluation {path}: its classes {sorted(theirs.items())} are not this run's {sorted(ours.items())}; give the evaluation of this run"
        )
    return data


def build_page(run_dir: Path, evaluation: dict[str, Any] | None, scenes: Sequence[ScenePreview]) -> str:
    """The whole HTML document."""
    report = run_report(run_dir)
    manifest = read_manifest(run_dir)
    classes = manifest.classes
    sections = [
        _summary(report, manifest),
        _legend(classes),
        _curves(report, manifest.metrics.to_dict() if manifest.metrics is not None else {}, _steps(manifest), classes),
        _selection(report),
    ]
    if evaluation is not None:
        sections.append(_evaluation(evaluation, classes))
    if scenes:
        sections.append(_scenes(scenes))
    title = f"cegate report: {Path(run_dir).resolve().name}"
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>{GENERATOR_TAG}"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p class='muted'>{escape(str(Path(run_dir).resolve()))}</p></header>"
        + "".join(sections)
        + f"<footer class='muted'>Written by cegate {escape(str(report['cegate_version']))}; "
        "everything on this page is inside this file.</footer></body></html>\n"
    )


def _section(title: str, body: str, note: str = "") -> str:
    note_html = f"<p class='muted'>{escape(note)}</p>" if note else ""
    return f"<section><h2>{escape(title)}</h2>{note_html}{body}</section>"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return escape(str(value))


def _summary(report: dict[str, Any], manifest: Any) -> str:
    backbone = report["backbone"]
    source = backbone.get("source", {})
    metrics, timing, params, data = report["metrics"], report["timing"], report["parameters"], report["data"]
    training = manifest.training
    rows = [
        ("status", f"{report['status']}, {report['mode']}, created {report['created']}"),
        (
            "backbone",
            f"{source.get('spec', '?')} ({backbone.get('architecture')}): depth {backbone.get('depth')}, "
            f"width {backbone.get('embed_dim')}, patch {backbone.get('patch_size')}, {backbone.get('parameters', 0):,} parameters",
        ),
        ("bands", ", ".join(report["bands"]["names"])),
        (
            "training",
            f"{counted(training.steps, 'step')} of {counted(training.batch_size, 'crop')} of {training.crop} px{_adapting(manifest)}, lr {training.lr:g}, "
            f"loss {training.loss}, selection {training.selection} ({report['select_count']} modules)",
        ),
        ("images", f"{len(data.get('train_images', []))} for training, {len(data.get('val_images', []))} held out for validation"),
    ]
    if params:
        trained = params.get("modules_trained", 0) + params.get("decoder", 0)
        rows.append(
            (
                "trained",
                f"{trained:,} parameters (modules {params.get('modules_trained', 0):,} + head "
                f"{params.get('decoder', 0):,}): {params.get('trainable_share', 0):.2%} of the backbone",
            )
        )
    result = []
    best = describe_best(metrics)
    if best is not None:
        result.append(best)
    if metrics.get("last_val_miou") is not None:
        result.append(f"last {metrics['last_val_miou']:.3f}")
    if metrics.get("final_loss") is not None:
        result.append(f"final loss {metrics['final_loss']:.3f}")
    rows.append(("result", "; ".join(result) or "no validation recorded"))
    if metrics.get("calibration"):
        rows.append(("calibrated", describe_calibration(metrics["calibration"], report["classes"])))
    if timing.get("total_seconds"):
        rows.append(
            (
                "time",
                f"{timing['total_seconds']:.1f} s in all, Fisher scoring {timing.get('fisher_seconds', 0):.1f} s "
                f"({timing.get('fisher_share', 0):.0%}), on {timing.get('device')}",
            )
        )
    adaptation = report.get("adaptation") or {}
    if adaptation:
        rows.append(("adapted to", f"{adaptation.get('target')} ({adaptation.get('target_images')} unlabeled images, {adaptation.get('mode')})"))
        if adaptation.get("guard"):
            rows.append(("adaptation", str(adaptation.get("weights"))))
        if adaptation.get("prototypes"):
            rows.append(("prototypes", str(adaptation["prototypes"].get("sentence"))))
    body = "<table class='facts'>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows) + "</table>"
    return _section("Run", body)


def _legend(classes: ClassTable) -> str:
    items = "".join(
        f"<li><span class='swatch' style='background:{_hex(c.color)}'></span><b>{c.id}</b> {escape(c.name)} <span class='muted'>{_hex(c.color)}</span></li>"
        for c in classes.classes
    )
    items += f"<li><span class='swatch checker'></span><b>{classes.ignore_index}</b> no data / unlabeled (transparent)</li>"
    return _section("Classes", f"<ul class='legend'>{items}</ul>", "Colours as in the masks' colour table.")


def _steps(manifest: Any) -> str:
    return counted(manifest.training.steps, "step") + _adapting(manifest)


def _adapting(manifest: Any) -> str:
    """A source-first run's adaptation steps, said after its source steps."""
    adapt_steps = getattr(manifest.adaptation, "adapt_steps", None) if manifest.adaptation is not None else None
    return f" (then {counted(adapt_steps, 'step')} adapting to the target)" if adapt_steps else ""


def _curves(report: dict[str, Any], metrics: dict[str, Any], steps: str, classes: ClassTable) -> str:
    rescored = [event["step"] for event in report["history"] if event["step"] > 0]
    markers = tuple(Marker(step, "rescored") for step in rescored)
    loss = line_chart(
        [Series("training loss", [tuple(p) for p in metrics.get("loss_history", [])], "#444")],
        title="Training loss",
        x_label="step",
        y_label="loss",
        style=ChartStyle(markers=markers),
    )
    best = metrics.get("best_step")
    val_markers = markers + ((Marker(best, "best", "#d62728"),) if best is not None else ())
    validation = line_chart(
        [
            Series(
                f"validation mIoU ({metrics.get('validation') or 'held-out images'})", [tuple(p) for p in metrics.get("val_history", [])], "#1f77b4", dots=True
            )
        ],
        title="Validation mIoU",
        x_label="step",
        y_label="mIoU",
        y_range=(0.0, 1.0),
        style=ChartStyle(markers=val_markers),
    )
    charts = [loss, validation, *_pseudo_label_charts(report, classes)]
    note = f"{steps}; dashed lines: Fisher rescoring" + ("; red: the step whose weights adapter.safetensors holds" if best is not None else "")
    return _section("Training", "<div class='charts'>" + "".join(f"<div>{c}</div>" for c in charts) + "</div>", note)


def _pseudo_label_charts(report: dict[str, Any], classes: ClassTable) -> list[str]:
    """Self-training: how confident the teacher is on the target, and what it says the target
    holds (a collapse onto a few classes shows as one line rising to the top)."""
    pseudo = (report.get("adaptation") or {}).get("pseudo_labels") or []
    if not pseudo:
        return []
    confidence = line_chart(
        [
            Series("confident share", [(p["step"], p["confident_share"]) for p in pseudo], "#222"),
            Series("mean weight", [(p["step"], p["mean_weight"]) for p in pseudo], "#999", dashed=True),
        ],
        title="Pseudo-labels on target crops",
        x_label="step",
        y_label="share of pixels",
        y_range=(0.0, 1.0),
    )
    shares = line_chart(
        [Series(c.name, [(p["step"], p["class_share"].get(c.name, math.nan)) for p in pseudo], _hex(c.color)) for c in classes.classes],
        title="Pseudo-label class shares (class colours)",
        x_label="step",
        y_label="share of pixels",
        y_range=(0.0, 1.0),
        style=ChartStyle(legend=False),
    )
    return [confidence, shares]


def _hex(color: tuple[int, int, int]) -> str:
    return f"#{color[0]:02x}{color[1]:02x}{color[2]:02x}"


def _selection(report: dict[str, Any]) -> str:
    scores = report["scores"]
    if not scores:
        return _section("Selection", "<p>No Fisher scores recorded (selection rule without scoring).</p>")
    kinds = [spec for spec in registered_kinds() if any(s["kind"] == spec.name for s in scores)]
    by_key = {(s["kind"], s["layer"]): s for s in scores}
    top = max((s["score"] for s in scores if s["score"] is not None), default=1.0) or 1.0
    head = "<tr><th>block</th>" + "".join(f"<th><span class='swatch' style='background:{k.color}'></span>{escape(k.title)}</th>" for k in kinds) + "</tr>"
    rows = []
    for layer in sorted({s["layer"] for s in scores}):
        cells = []
        for kind in (spec.name for spec in kinds):
            s = by_key.get((kind, layer))
            if s is None:
                cells.append("<td></td>")
                continue
            if s["score"] is None:  # below the rule's cost cut: never scored, not a score of 0
                cells.append(f"<td class='unscored' title='not scored'>{NOT_SCORED}</td>")
                continue
            t = max(0.0, min(1.0, s["score"] / top))
            style = f"background:rgba(33,102,172,{0.08 + 0.8 * t:.2f});color:{'#fff' if t > 0.55 else '#111'}"
            mark = " k" if s.get("kept") else ""
            chosen = s["selected"]
            cells.append(
                f"<td class='score{' chosen' if chosen else ''}' style='{style}' title='raw Fisher {s['raw']:.3g}'>"
                f"{s['score']:.2f}{' ●' if chosen else ''}{mark}</td>"
            )
        rows.append(f"<tr><th>{layer}</th>{''.join(cells)}</tr>")
    grid = f"<table class='grid'>{head}{''.join(rows)}</table>"
    unscored = describe_unscored(scores, report["compute"]["rule"])
    average = "an average scored block" if unscored else "an average block"
    note = (
        f"Fisher scores at step {report['score_step']}, normalised per kind (1.0 = {average} for that kind); "
        f"● = selected ({report['select_count']} of {len(scores)}), darker = more of the task's gradient."
    )
    if any(s.get("kept") for s in scores):
        note += " k = kept from the earlier run."
    if unscored:
        note += f" {unscored}."
    compute = report.get("compute")
    if compute and compute.get("depth"):
        note += f" Rule {compute['rule']}: {describe_rule(compute['rule'])}. Compute: {describe_compute(compute)}."
    return _section("Selection", f"<div class='selection'><div>{grid}</div><div>{_history(report['history'])}</div></div>", note)


def _kind_color(kind: str) -> str:
    """The kind's registered colour; grey for a kind this installation does not have."""
    try:
        return kind_spec(kind).color
    except KeyError:
        return "#555"


def _history(history: list[dict[str, Any]]) -> str:
    if not history:
        return ""
    shown = history
    if len(history) > MAX_HISTORY_COLUMNS:
        picks = sorted({round(i * (len(history) - 1) / (MAX_HISTORY_COLUMNS - 1)) for i in range(MAX_HISTORY_COLUMNS)})
        shown = [history[i] for i in picks]
    ever = {name for event in history for name in event["selected"]}
    order = sorted(ever, key=lambda name: ModuleKey.parse(name).order)
    head = "<tr><th>module</th>" + "".join(f"<th>{event['step']}</th>" for event in shown) + "</tr>"
    rows = []
    for name in order:
        color = _kind_color(ModuleKey.parse(name).kind)
        cells = "".join(f"<td><span class='dot' style='background:{color}'></span></td>" if name in event["selected"] else "<td></td>" for event in shown)
        rows.append(f"<tr><th>{escape(name)}</th>{cells}</tr>")
    changes = [e for e in history if e["added"] or e["removed"]]
    unchanged = "<li>the same modules at every rescoring</li>" if len(history) > 1 else "<li>chosen once (--reselect-every N rescores every N steps)</li>"
    summary = (
        "".join(f"<li>step {e['step']}: +{escape(', '.join(e['added']) or '-')} &minus;{escape(', '.join(e['removed']) or '-')}</li>" for e in changes)
        or unchanged
    )
    caption = (
        f"modules chosen at each Fisher scoring; columns: the step ({counted(len(history), 'scoring')}{', some left out' if shown is not history else ''})"
    )
    return f"<table class='history'><caption>{caption}</caption>{head}{''.join(rows)}</table><ul class='changes'>{summary}</ul>"


def _evaluation(evaluation: dict[str, Any], classes: ClassTable) -> str:
    present = [row for row in evaluation["classes"] if row["id"] in classes.ids]
    color = {c.id: _hex(c.color) for c in classes.classes}
    bars = []
    for row in present:
        iou = row.get("iou")
        width = 0 if iou is None else max(0.0, min(1.0, iou)) * 100
        bars.append(
            f"<tr><th>{escape(row['name'])}</th><td class='bar'><span style='width:{width:.1f}%;background:{color[row['id']]}'></span></td>"
            f"<td>{_fmt(iou)}</td><td>{_fmt(row.get('f1'))}</td><td>{_fmt(row.get('precision'))}</td><td>{_fmt(row.get('recall'))}</td>"
            f"<td>{_fmt(row.get('pixels'))}</td></tr>"
        )
    table = (
        "<table class='iou'><tr><th>class</th><th colspan='2'>IoU</th><th>F1</th><th>precision</th><th>recall</th><th>pixels</th></tr>"
        + "".join(bars)
        + "</table>"
    )
    head = f"<p class='big'>mIoU <b>{_fmt(evaluation.get('miou'))}</b> &nbsp; overall accuracy <b>{_fmt(evaluation.get('overall_accuracy'))}</b> &nbsp; {_fmt(evaluation.get('pixels'))} pixels, {len(evaluation.get('files', []))} images</p>"
    return _section(
        "Evaluation",
        head + f"<div class='selection'><div>{table}</div><div>{_confusion(evaluation['matrix'], present)}</div></div>",
        "From `cegate evaluate --json`; classes absent from labels and prediction have no IoU (-).",
    )


def _confusion(matrix: list[list[int]], rows: list[dict[str, Any]]) -> str:
    ids = [row["id"] for row in rows]
    head = "<tr><th>label \\ predicted</th>" + "".join(f"<th>{escape(row['name'])}</th>" for row in rows) + "</tr>"
    body = []
    for row in rows:
        counts = [matrix[row["id"]][j] for j in ids]
        total = sum(matrix[row["id"]]) or 1
        cells = "".join(
            f"<td style='background:rgba(33,102,172,{0.05 + 0.85 * n / total:.2f});color:{'#fff' if n / total > 0.55 else '#111'}' "
            f"title='{n:,} pixels'>{n / total:.0%}</td>"
            for n in counts
        )
        body.append(f"<tr><th>{escape(row['name'])}</th>{cells}</tr>")
    return f"<table class='grid confusion'><caption>confusion matrix (share of each label row)</caption>{head}{''.join(body)}</table>"


def _scenes(scenes: Sequence[ScenePreview]) -> str:
    blocks = []
    for scene in scenes:
        if scene.problem:
            blocks.append(f"<div class='scene'><h3>{escape(scene.name)}</h3><p class='problem'>{escape(scene.problem)}</p></div>")
            continue
        figures = []
        for picture in scene.pictures:
            data = base64.b64encode(png_bytes(picture.pixels)).decode("ascii")
            shares = ", ".join(f"{escape(name)} {share:.0%}" for name, share in picture.shares[:5])
            height, width = picture.pixels.shape[:2]
            scale = DISPLAY_SIDE / max(height, width)  # small scenes shown enlarged (pixelated), large ones reduced
            figures.append(
                f"<figure style='width:{round(width * scale)}px'><img src='data:image/png;base64,{data}' alt='{escape(picture.caption)}' "
                f"width='{round(width * scale)}' height='{round(height * scale)}'>"
                f"<figcaption>{escape(picture.caption)}{'<br>' + shares if shares else ''}</figcaption></figure>"
            )
        blocks.append(
            f"<div class='scene'><h3>{escape(scene.name)} <span class='muted'>{escape(str(scene.source))}</span></h3>"
            f"<div class='figures'>{''.join(figures)}</div></div>"
        )
    return _section("Scenes", "".join(blocks), "Input, the run's prediction, and the label where the folder has one; transparent = no data.")


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d1d1f;max-width:1180px;margin:0 auto;padding:16px 24px;background:#fafafa}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:0 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:4px 0 8px}section{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:14px 18px;margin:14px 0}
.muted{color:#6b6b6b;font-size:12px;font-weight:normal}.big{font-size:15px}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;text-align:right}th{font-weight:600}
.facts th{text-align:left;color:#555;vertical-align:top;white-space:nowrap}.facts td{text-align:left}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:6px 22px;margin:4px 0}
.swatch{display:inline-block;width:14px;height:14px;border:1px solid #0003;border-radius:3px;margin-right:6px;vertical-align:-2px}
.checker,figure img{background:repeating-conic-gradient(#ddd 0 25%,#fff 0 50%) 0 0/12px 12px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px}.chart{width:100%;height:auto}
.selection{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
.grid td{min-width:64px;border:2px solid #fff;font-variant-numeric:tabular-nums}.grid td.chosen{outline:3px solid #d62728;outline-offset:-3px;font-weight:700}.grid td.unscored{color:#888;background:#f4f4f4}
.history th,.history td{padding:2px 6px;text-align:center;border-bottom:1px solid #f0f0f0}.history th:first-child{text-align:left}
.history caption,.confusion caption{caption-side:top;text-align:left;font-size:12px;color:#555;padding-bottom:4px;max-width:300px}
.dot{display:inline-block;width:11px;height:11px;border-radius:50%}.changes{font-size:12px;color:#444;padding-left:18px}
.iou th:first-child{text-align:left}.bar{width:220px;background:#f1f1f1;padding:0}.bar span{display:block;height:13px;border-radius:2px;min-width:1px}
.scene{margin:10px 0 18px}.figures{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0}
figure img{display:block;max-width:100%;height:auto;image-rendering:pixelated;border:1px solid #ccc}
figcaption{font-size:12px;color:#444;margin-top:4px}.problem{color:#b00020;font-size:13px}
footer{margin:18px 0;text-align:center}
"""
