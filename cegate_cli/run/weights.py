"""The run's trained weights (adapter.safetensors, adapter_last.safetensors): which tensors a run
holds, under which names, written and read back as one matching pair.

    run_tensors + save_weights       what a trained model leaves in a run (the trainer snapshots
                                     `run_tensors` at its best and last step; `adapt` writes them)
    restore_weights (load_weights)   the same tensors read back, checked and put into a model
                                     rebuilt from run.json

A run holds, under these names:

    toolbox.<kind>.<layer>.<param>   every module ever selected (names from `Toolbox.state_dict_of`,
                                     which the resume state shares)
    decoder.<param>                  the head
    patch_embed.*                    the embedding fitted to the run's bands (the backbone's
                                     `band_embedding_state`; empty for families that fit none)
    backbone.<param>                 only for the full fine-tuning baseline: the whole backbone

Changing what a run holds is a change to this file alone; the parameter counts in run.json are
asked of it too, so they always describe what the run actually trained.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cegate_cli.errors import RunFolderError
from cegate_cli.infra.atomic import atomic_path, writing
from cegate_cli.model.decoder import CLASS_BIAS
from cegate_cli.predict.map_options import WEIGHTS
from cegate_cli.run.layout import ADAPTER_BEST, ADAPTER_LAST, RUN_FORMAT, RUN_JSON
from cegate_cli.run.misfit import describe_misfit
from cegate_cli.run.sections import ParameterRecord
from cegate_cli.toolbox.attach import Toolbox
from cegate_cli.toolbox.module_key import ModuleKey

if TYPE_CHECKING:  # the model pulls in every backbone family: reading run.json must not need them
    from cegate_cli.model.segmentation import SegmentationModel
    from cegate_cli.run.manifest import RunManifest

MISFIT_FIX = "was run.json edited, or are the weights another run's? Put the run's own files back, or train again with `cegate adapt`"
DECODER_PREFIX = "decoder."
BACKBONE_PREFIX = "backbone."


# -- writing: what a trained model leaves in its run ----------------------------------------------
def run_tensors(model: SegmentationModel, toolbox: Toolbox, keys: Iterable[ModuleKey], *, whole_backbone: bool = False) -> dict[str, torch.Tensor]:
    """CPU copies of what a run's adapter file holds: the modules `keys` (the run's ever selected),
    the head and the band-fitted embedding; with `whole_backbone` (the full fine-tuning baseline, not
    a product mode) the backbone's own weights too. Copies, so later training steps leave them be."""
    state = {name: t.detach().cpu().clone() for name, t in toolbox.state_dict_of(keys).items()}
    state.update({f"{DECODER_PREFIX}{n}": t.detach().cpu().clone() for n, t in model.decoder.state_dict().items()})
    state.update({n: t.detach().cpu().clone() for n, t in model.patch_embed_state().items()})
    if whole_backbone:
        state.update({f"{BACKBONE_PREFIX}{n}": p.detach().cpu().clone() for n, p in toolbox.backbone_own_named().items()})
    return state


def with_class_offsets(tensors: dict[str, torch.Tensor], offsets: Sequence[float]) -> dict[str, torch.Tensor]:
    """A run's tensors with `offsets` added to the head's class bias (every head ends in a 1x1
    `classifier` conv, whose bias shifts each class's scores at every pixel): how a calibration
    fitted on validation (train/calibrate.py) reaches predict without a new tensor."""
    name = f"{DECODER_PREFIX}{CLASS_BIAS}"
    shifted = dict(tensors)
    shifted[name] = tensors[name] + torch.tensor(offsets, dtype=tensors[name].dtype)
    return shifted


def save_weights(path: Path, tensors: dict[str, torch.Tensor], run_id: str | None = None) -> None:
    """Write a run's trained weights atomically, stamped with the run's id (see `load_weights`)."""
    metadata = {"format": RUN_FORMAT, **({"run_id": run_id} if run_id else {})}
    then = "the training itself is saved: run the same command with --resume to write the weights"
    with writing(path, "write the trained weights", then):
        with atomic_path(path) as temporary:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(temporary), metadata=metadata)


# -- reading: the same tensors back into a rebuilt model ------------------------------------------
def weights_path(run_dir: Path, which: str = "best") -> Path:
    """The adapter file of the best validation step ("best") or of the last step ("last")."""
    if which not in WEIGHTS:  # MapOptions.check says so to the user; this guards the library's callers
        raise ValueError(f"weights {which!r}: choose {' or '.join(WEIGHTS)}")
    return Path(run_dir) / (ADAPTER_BEST if which == "best" else ADAPTER_LAST)


def restore_weights(run_dir: Path, manifest: RunManifest, model: SegmentationModel, toolbox: Toolbox, which: str = "best") -> list[ModuleKey]:
    """Put a run's trained weights into `model` (built from its run.json) and switch on the modules
    those weights were validated with. Refuses, as a RunFolderError, weights of another run, a
    damaged file, a selected module without its tensors, and tensors that fit no place."""
    run_dir = Path(run_dir)
    path = weights_path(run_dir, which)
    state = load_weights(path, manifest.run_id)
    active = manifest.best_selection if (which == "best" and manifest.best_selection) else manifest.final_selection
    _check_modules_present(toolbox, active, state, path)
    _apply_trained_weights(model, toolbox, state, run_dir)
    toolbox.set_active(active)
    return active


def load_weights(path: Path, run_id: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of an adapter file; with `run_id`, only if the file belongs to that run."""
    if not path.is_file():
        raise RunFolderError(f"{path} is missing; the run did not finish (resume it with `cegate adapt ... --resume`)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            theirs = metadata.get("run_id")
            if run_id is not None and theirs != run_id:
                origin = f"run {theirs}" if theirs else "an unknown run"
                raise RunFolderError(
                    f"{path}: these weights belong to {origin}, not to this run ({run_id}, from {RUN_JSON}); "
                    "put this run's own adapter files back, or use the run folder the weights came from"
                )
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except RunFolderError:
        raise
    except (SafetensorError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunFolderError(
            f"{path}: not a complete safetensors file ({reason}); it is damaged or was cut short: "
            "copy it again from where the run was made, or train again with `cegate adapt`"
        ) from None


def _check_modules_present(toolbox: Toolbox, active: list[ModuleKey], state: dict[str, torch.Tensor], path: Path) -> None:
    """Every module run.json switches on must have all its trained tensors in the file.

    Without this check a module whose tensors are missing would run with its untrained
    (identity) initial values: a silently different model, not the one that was validated.
    """
    missing = []
    for key in active:
        if key not in toolbox.modules:
            continue  # _apply_trained_weights / set_active report a toolbox that does not fit
        if any(name not in state for name in toolbox.state_dict_of([key])):
            missing.append(f"{key[0]}@{key[1]}")
    if missing:
        raise RunFolderError(
            f"{path}: no trained weights for module(s) {', '.join(missing)} that run.json selects; "
            "this file is not the run's own: put the run's adapter files back, or train again with `cegate adapt`"
        )


def apply_run_tensors(model: SegmentationModel, toolbox: Toolbox, tensors: dict[str, torch.Tensor]) -> None:
    """Put tensors named as `run_tensors` names them back into the model (training continues
    from a kept model: self-training after its source phase)."""
    _apply_trained_weights(model, toolbox, tensors, Path("the trained tensors"))


def _apply_trained_weights(model: SegmentationModel, toolbox: Toolbox, state: dict[str, torch.Tensor], where: Path) -> None:
    misfit = describe_misfit("decoder", model.decoder.state_dict(), _strip(state, DECODER_PREFIX))
    if misfit is not None:
        raise RunFolderError(f"{where}: the trained weights do not fit the model described in run.json ({misfit}); {MISFIT_FIX}")
    try:
        model.backbone.load_band_embedding_state(state)
        model.decoder.load_state_dict(_strip(state, DECODER_PREFIX))
        toolbox.load_state(state)
        backbone_state = _strip(state, BACKBONE_PREFIX)
        if backbone_state:  # the full fine-tuning baseline saves the whole backbone with the run
            params = dict(model.backbone.named_parameters())
            missing = sorted(set(backbone_state) - set(params))
            if missing:
                raise KeyError(f"backbone weights {missing[:3]} have no place in the model")
            with torch.no_grad():
                for name, tensor in backbone_state.items():
                    params[name].copy_(tensor)
    except (KeyError, RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFolderError(f"{where}: the trained weights do not fit the model described in run.json ({reason}); {MISFIT_FIX}") from exc


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named `prefix...`, without the prefix."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# -- counting: run.json's "parameters" ------------------------------------------------------------
def backbone_parameter_count(toolbox: Toolbox) -> int:
    """Parameters of the backbone itself, toolbox modules left out (the base of "trainable share")."""
    return sum(p.numel() for p in toolbox.backbone_own_named().values())


def parameter_summary(
    model: SegmentationModel,
    toolbox: Toolbox,
    candidates: Iterable[ModuleKey],
    ever_selected: Iterable[ModuleKey],
    final_selection: Iterable[ModuleKey],
) -> ParameterRecord:
    """run.json's "parameters": the backbone, the candidate modules, those the run trained (what its
    adapter files hold) and those switched on at the end, the head, and the share that trained."""
    backbone = backbone_parameter_count(toolbox)
    modules_trained = sum(toolbox.parameter_count(k) for k in ever_selected)
    decoder = sum(p.numel() for p in model.decoder.parameters())
    return ParameterRecord(
        backbone=backbone,
        candidates=sum(toolbox.parameter_count(k) for k in candidates),
        modules_trained=modules_trained,
        modules_final=sum(toolbox.parameter_count(k) for k in final_selection),
        decoder=decoder,
        trainable_share=(modules_trained + decoder) / backbone,
    )
