"""Rebuild a trained model from a run folder, for `predict`, `evaluate`, `inspect` and `adapt --from`:
the backbone from the Hub cache at the recorded revision, the toolbox and head from run.json, the
trained weights from adapter.safetensors (`cegate_cli.run.weights`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cegate_cli.backbone.hub import BackboneSource, resolve_backbone
from cegate_cli.backbone.registry import family_of
from cegate_cli.errors import RunFolderError
from cegate_cli.model.segmentation import SegmentationModel, build_model
from cegate_cli.run.manifest import RunManifest, read_manifest
from cegate_cli.run.replaced import stopped_overwrite_note
from cegate_cli.run.weights import restore_weights
from cegate_cli.toolbox import Toolbox


@dataclass
class LoadedRun:
    run_dir: Path
    manifest: RunManifest
    model: SegmentationModel
    toolbox: Toolbox
    device: torch.device


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without one is a clear error."""
    from cegate_cli.errors import InputError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda but no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise InputError(f"--device {name!r}: choose auto, cpu or cuda")
    return torch.device(name)


def source_for_run(manifest: RunManifest, *, offline: bool | None = None, token: str | None = None) -> BackboneSource:
    """The backbone exactly as trained: same spec, pinned to the recorded revision and checksum."""
    recorded = manifest.backbone.source
    source = resolve_backbone(recorded.spec, revision=recorded.revision, token=token, offline=offline)
    if recorded.weights_sha256 != source.weights_sha256:
        now = (source.weights_sha256 or "no weights file")[:12]
        then = (recorded.weights_sha256 or "no weights file")[:12]
        raise RunFolderError(
            f"the backbone weights for {recorded.spec} ({now}) differ from the ones this run was trained on "
            f"({then}); restore the original files, or adapt again with this version"
        )
    return source


def load_run(
    run_dir: Path,
    *,
    device: str = "auto",
    weights: str = "best",
    offline: bool | None = None,
    token: str | None = None,
) -> LoadedRun:
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if manifest.status != "complete":
        raise RunFolderError(stopped_overwrite_note(run_dir) or f"{run_dir}: the run has not finished (status {manifest.status!r}); resume it with --resume")
    source = source_for_run(manifest, offline=offline, token=token)
    pretrained = family_of(source).load(source)
    built = build_model(
        pretrained,
        manifest.bands.names,
        manifest.classes.num_classes,
        manifest.toolbox,
        decoder=manifest.training.decoder,
        seed=manifest.training.seed,
        normalization=manifest.normalization,
        inputs=manifest.backbone.inputs,  # the family's own, as its section of run.json holds them
    )
    restore_weights(run_dir, manifest, built.model, built.toolbox, weights)
    built.model.eval()
    target = resolve_device(device)
    built.model.to(target)
    return LoadedRun(run_dir, manifest, built.model, built.toolbox, target)
