"""Rebuild a trained model from a run folder: the backbone from the Hub cache at the recorded
revision, the toolbox and head from run.json, the trained weights from adapter.safetensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cegate_cli.backbone.galileo_backbone import GalileoInputs
from cegate_cli.backbone.load import load_pretrained_vit
from cegate_cli.errors import RunFolderError
from cegate_cli.hub import BackboneSource, resolve_backbone
from cegate_cli.model import SegmentationModel, build_model
from cegate_cli.run import ADAPTER_BEST, ADAPTER_LAST, RunManifest, load_weights, read_manifest
from cegate_cli.toolbox import ModuleKey, Toolbox


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
    recorded = BackboneSource.from_dict(manifest.backbone["source"])
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
        raise RunFolderError(f"{run_dir}: the run has not finished (status {manifest.status!r}); resume it with --resume")
    source = source_for_run(manifest, offline=offline, token=token)
    pretrained = load_pretrained_vit(source)
    built = build_model(
        pretrained,
        manifest.bands.names,
        manifest.classes.num_classes,
        manifest.toolbox,
        decoder=manifest.training.decoder,
        seed=manifest.training.seed,
        normalization=manifest.normalization,
        galileo=GalileoInputs.from_dict(manifest.backbone["galileo"]) if "galileo" in manifest.backbone else None,
    )
    weights_path = run_dir / (ADAPTER_BEST if weights == "best" else ADAPTER_LAST)
    state = load_weights(weights_path, manifest.run_id)
    active = manifest.best_selection if (weights == "best" and manifest.best_selection) else manifest.final_selection
    _check_modules_present(built.toolbox, active, state, weights_path)
    apply_trained_weights(built.model, built.toolbox, state, run_dir)
    built.toolbox.set_active(active)
    built.model.eval()
    target = resolve_device(device)
    built.model.to(target)
    return LoadedRun(run_dir, manifest, built.model, built.toolbox, target)


def _check_modules_present(toolbox: Toolbox, active: list[ModuleKey], state: dict[str, torch.Tensor], path: Path) -> None:
    """Every module run.json switches on must have all its trained tensors in the file.

    Without this check a module whose tensors are missing would run with its untrained
    (identity) initial values: a silently different model, not the one that was validated.
    """
    missing = []
    for key in active:
        if key not in toolbox.modules:
            continue  # apply_trained_weights / set_active report a toolbox that does not fit
        if any(name not in state for name in toolbox.state_dict_of([key])):
            missing.append(f"{key[0]}@{key[1]}")
    if missing:
        raise RunFolderError(
            f"{path}: no trained weights for module(s) {', '.join(missing)} that run.json selects; "
            "this file is not the run's own: put the run's adapter files back, or train again with `cegate adapt`"
        )


def apply_trained_weights(model: SegmentationModel, toolbox: Toolbox, state: dict[str, torch.Tensor], where: Path) -> None:
    try:
        model.backbone.load_band_embedding_state(state)
        model.decoder.load_state_dict({k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")})
        toolbox.load_state(state)
        backbone_state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        if backbone_state:  # the full fine-tuning baseline saves the whole backbone with the run
            params = dict(model.backbone.named_parameters())
            missing = sorted(set(backbone_state) - set(params))
            if missing:
                raise KeyError(f"backbone weights {missing[:3]} have no place in the model")
            with torch.no_grad():
                for name, tensor in backbone_state.items():
                    params[name].copy_(tensor)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise RunFolderError(f"{where}: the trained weights do not fit the model described in run.json ({exc})") from exc
