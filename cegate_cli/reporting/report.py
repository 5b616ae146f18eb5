"""What `inspect` shows, as plain data: the command renders it as tables or prints it as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cegate_cli.run import AdaptationRecord, calibrated, read_manifest, saved_val_miou
from cegate_cli.toolbox.config import ToolboxConfig
from cegate_cli.toolbox.fisher import select_top
from cegate_cli.toolbox.kinds import kind_labels
from cegate_cli.toolbox.module_key import in_order, keys_from_json


def backbone_report(
    spec: str, *, revision: str | None = None, token: str | None = None, offline: bool | None = None, toolbox: ToolboxConfig | None = None
) -> dict[str, Any]:
    """The backbone and every candidate module with its size (needs the weights, so it may download)."""
    from cegate_cli.backbone.hub import resolve_backbone
    from cegate_cli.backbone.registry import load_pretrained
    from cegate_cli.toolbox.attach import attach_toolbox

    source = resolve_backbone(spec, revision=revision, token=token, offline=offline)
    pretrained = load_pretrained(source)
    backbone = pretrained.pretrained_backbone()  # fed every band it knows
    backbone_params = sum(p.numel() for p in backbone.parameters())
    box = attach_toolbox(backbone, toolbox or ToolboxConfig())
    modules = [{**key.to_json(), "parameters": box.parameter_count(key), "share_of_backbone": box.parameter_count(key) / backbone_params} for key in box.keys()]
    total = sum(m["parameters"] for m in modules)
    return {
        "backbone": {
            "spec": spec,
            "source": source.to_dict(),
            "architecture": pretrained.architecture,
            "bands": list(pretrained.band_names) if pretrained.band_names else None,
            "patch_size": backbone.patch_size,
            "embed_dim": backbone.embed_dim,
            "depth": backbone.depth,
            "parameters": backbone_params,
            "feature_layers": list(backbone.feature_layers),
        },
        "kinds": kind_labels(),
        "candidates": modules,
        "candidates_total": {"parameters": total, "share_of_backbone": total / backbone_params},
    }


def run_report(run_dir: Path) -> dict[str, Any]:
    """Everything a person asks about a run: what was chosen, where, why, and how it went.

    The score grid lists every candidate: a module the rule could not pick and so did not score
    (fisher-cost below its cost cut, `Selection.unscored`) has "score" and "raw" None, so readers
    show it as not scored, never as 0. Runs that scored every candidate read as before."""
    manifest = read_manifest(run_dir)
    final = manifest.selections[-1] if manifest.selections else None
    kept = set(keys_from_json(list(manifest.adaptation.kept_modules))) if manifest.adaptation is not None else set()
    grid = []
    if final is not None:
        selected = set(final.selected)
        # With --from, the selection is the kept modules plus the target's top k; tell them apart.
        eligible = {key: v for key, v in final.scores.normalized.items() if key[0] in manifest.kinds}
        chosen = set(select_top(eligible, manifest.select_count)) if kept else selected
        normalized, raw = final.scores.normalized, final.scores.raw
        for key in in_order([*normalized, *(key for key in final.unscored if key not in normalized)]):
            grid.append(
                {
                    **key.to_json(),
                    "score": normalized.get(key),
                    "raw": raw.get(key),
                    "selected": key in selected,
                    "chosen": key in chosen,
                    "kept": key in kept,
                }
            )
    history = []
    previous: set[tuple[str, int]] = set()
    for selection in manifest.selections:
        current = set(selection.selected)
        history.append(
            {
                "step": selection.step,
                "rule": selection.rule,
                "selected": [f"{k}@{l}" for k, l in selection.selected],
                "added": sorted(f"{k}@{l}" for k, l in current - previous) if previous else [],
                "removed": sorted(f"{k}@{l}" for k, l in previous - current),
                "seconds": selection.seconds,
            }
        )
        previous = current
    timing = manifest.timing.to_dict() if manifest.timing is not None else {}
    if manifest.timing is not None and manifest.timing.total_seconds:
        timing["fisher_share"] = manifest.timing.fisher_seconds / manifest.timing.total_seconds
    return {
        "run": str(run_dir),
        "status": manifest.status,
        "mode": manifest.mode,
        "cegate_version": manifest.cegate_version,
        "created": manifest.created,
        "backbone": manifest.backbone.to_dict(),
        "bands": manifest.bands.to_dict(),
        "classes": manifest.classes.to_dict(),
        "kinds": list(manifest.kinds),
        "select_count": manifest.select_count,
        "compute": selection_compute(manifest),
        "scores": grid,
        "score_step": final.step if final else None,
        "history": history,
        "parameters": manifest.parameters.to_dict() if manifest.parameters is not None else {},
        "metrics": {k: v for k, v in (manifest.metrics.to_dict() if manifest.metrics is not None else {}).items() if k != "loss_history"},
        "timing": timing,
        "data": manifest.data.to_dict(),
        "adaptation": adaptation_report(manifest.adaptation, [c.name for c in manifest.classes.classes]),
        "extra": {"adaptation": manifest.adaptation.to_dict() if manifest.adaptation is not None else {}},
    }


def selection_compute(manifest: Any) -> dict[str, Any]:
    """The rule, its budget and the compute it saved, for people who have not read the paper.

    Blocks below the lowest trained module run without autograd (backbone/base.py), so the
    backward pass covers only blocks lowest..depth-1: selecting high blocks is what saves
    compute, selecting block 0 saves almost none. Over rescorings, the lowest block any
    selection used is what the run paid for.
    """
    rule = manifest.training.selection
    depth = manifest.backbone.depth
    if manifest.selections:
        final = manifest.selections[-1]
        candidates: int | None = len(final.scores.raw) + len(set(final.unscored) - set(final.scores.raw))
    else:
        candidates = None
    layers = [layer for selection in manifest.selections for _, layer in selection.selected]
    layers += [layer for _, layer in manifest.ever_selected]
    if rule == "full":
        lowest: int | None = 0
    elif rule == "none" or not layers:
        lowest = None
    else:
        lowest = min(layers)
    backward = 0 if lowest is None else depth - lowest
    return {
        "rule": rule,
        "selected": manifest.select_count,
        "candidates": candidates,
        "depth": depth,
        "lowest_block": lowest,
        "backward_blocks": backward,
        "backward_share": backward / depth if depth else None,
    }


RULE_MEANINGS = {
    "fisher-cost": (
        "the modules whose gradient carries most of the task (Fisher score) among the upper half of the "
        "blocks, so the lower half runs without a backward pass. On the NAIP benchmark at the defaults "
        "(docs/benchmarks.md, 10 seeds) it was ahead of a random choice of as many modules and of every module "
        "on most seeds with tiny (by 0.002 and 0.005 mIoU); with galileo-nano no rule was, and training every "
        "module made a slightly better map (+0.007, within the seeds' noise) for 1.6x the step time: what it "
        "buys is a map as good or nearly for less compute"
    ),
    "fisher": "the modules with the highest Fisher scores over all blocks (the paper's rule); low blocks usually win, so little backward pass is skipped",
    "fisher-block": "the modules with the highest Fisher scores, each block's scores ranked against the same block's other kinds",
    "fisher-agree": "the modules whose per-sample gradients agree most (squared mean gradient), not the largest gradients",
    "random": "modules drawn at random (a baseline for the benchmarks)",
    "random-cost": "modules drawn at random among fisher-cost's blocks (a baseline: is it the scores or the blocks?)",
    "all": "every module of the toolbox",
    "none": "no module: the backbone stays frozen and only the head trains",
    "full": "no module: the whole backbone trains with the head (full fine-tuning)",
}
"""What each selection rule chose, in a sentence for someone who has not read the paper (inspect, report)."""


NOT_SCORED = "–"
"""How inspect and the report show a module the rule did not score (never as a score of 0)."""


def describe_unscored(scores: list[dict[str, Any]], rule: str) -> str | None:
    """The legend line for the grid's unscored modules (inspect, report); None when all were scored."""
    blocks = sorted({s["layer"] for s in scores if s["score"] is None})
    if not blocks:
        return None
    contiguous = blocks == list(range(blocks[0], blocks[-1] + 1))
    where = f"block {blocks[0]}" if len(blocks) == 1 else f"blocks {blocks[0]}-{blocks[-1]}" if contiguous else f"blocks {', '.join(map(str, blocks))}"
    lie = "lies" if len(blocks) == 1 else "lie"
    return f"{NOT_SCORED} = not scored: {where} {lie} below {rule}'s cost cut, where it may not pick, so scoring skipped them"


def describe_rule(rule: str) -> str:
    return RULE_MEANINGS.get(rule, rule)


def describe_compute(compute: dict[str, Any]) -> str:
    """One line on what the selection saved: autograd stops at the lowest trained block (inspect, report)."""
    depth, lowest = compute["depth"], compute["lowest_block"]
    budget = f"{compute['selected']} of {compute['candidates']} modules" if compute.get("candidates") else f"{compute['selected']} modules"
    if compute["rule"] == "full":
        return f"full fine-tuning: the backward pass runs through all {depth} blocks"
    if lowest is None:
        return f"rule {compute['rule']}: head only, no backward pass through the backbone's {depth} blocks"
    if lowest == 0:
        saved = "nothing of the backbone's backward pass is skipped (a module sits in block 0)"
    else:
        below = "block 0 runs" if lowest == 1 else f"blocks 0-{lowest - 1} run"
        saved = f"{below} forward only, {lowest / depth:.0%} of the backbone's backward pass skipped"
    return f"rule {compute['rule']}, {budget}; autograd runs through blocks {lowest}-{depth - 1} ({compute['backward_blocks']} of {depth}): {saved}"


def describe_best(metrics: dict[str, Any]) -> str | None:
    """The saved best weights' validation mIoU and step, as adapt's summary, inspect and the HTML
    report all say it: after calibration where it moved a class score, the value predict gets."""
    if metrics.get("best_val_miou") is None:
        return None
    after = " (after calibration)" if calibrated(metrics) else ""
    return f"best validation mIoU {saved_val_miou(metrics):.3f} at step {metrics.get('best_step')}{after}"


def describe_calibration(calibration: dict[str, Any], classes: dict[str, Any]) -> str:
    """One line on the class-score offsets fitted on validation after training (inspect, report)."""
    names = {int(c["id"]): c["name"] for c in classes["classes"]}
    moved = [f"{names.get(i, f'class_{i}')} {offset:+.2f}" for i, offset in enumerate(calibration["offsets"]) if offset]
    before, after, pixels = calibration["val_miou_before"], calibration["val_miou_after"], calibration["pixels"]
    if not moved:
        return f"no class score moved: no offset raised validation mIoU ({before:.3f}, {pixels:,} pixels)"
    return f"class scores {', '.join(moved)}: validation mIoU {before:.3f} -> {after:.3f} ({pixels:,} pixels)"


def adaptation_report(section: AdaptationRecord | None, class_names: list[str]) -> dict[str, Any]:
    """Self-training at a glance: where it adapted to, from what, and how the pseudo-labels went.

    Empty for supervised runs. Class shares are keyed by class name so a reader sees a collapse
    ("bare soil 0.92") without a lookup table.
    """
    if section is None:
        return {}
    history = []
    for entry in section.pseudo_labels:
        history.append(
            {
                "step": entry["step"],
                "confident_share": entry["confident_share"],
                "mean_weight": entry["mean_weight"],
                "class_share": dict(zip(class_names, entry.get("class_share", []))),
                "confident_class_share": dict(zip(class_names, entry.get("confident_class_share", []))),
            }
        )
    return {
        "mode": section.mode,
        "target": section.target,
        "target_images": section.target_images,
        "from_run": section.from_run,
        "kept_modules": [f"{m['kind']}@{m['layer']}" for m in section.kept_modules],
        "normalization": section.normalization_used,
        "settings": section.self_training.to_dict(),
        "teacher_bytes": section.teacher_bytes,
        "weights": section.weights,
        "guard": section.guard,
        "prototypes": section.prototypes,
        "pseudo_labels": history,
    }
