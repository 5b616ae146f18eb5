"""A supervised trainer's resume state: what is saved, and how it is checked and put back.

The state is data only (safetensors + JSON through `cegate_cli.run.state`), so resuming never
unpickles anything; a state made with other settings or another process count is refused, since
the resumed run would then differ from one that was never interrupted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from cegate_cli.errors import RunFolderError
from cegate_cli.infra.distributed import world
from cegate_cli.options.train import NOT_FINGERPRINTED
from cegate_cli.run.state import plain, read_state, write_state
from cegate_cli.toolbox.fisher import Selection
from cegate_cli.train.calibrate import Calibration
from cegate_cli.train.gating import apply_selection
from cegate_cli.train.optimizer import optimizer_state_by_name, restore_optimizer_state

if TYPE_CHECKING:
    from cegate_cli.train.supervised import SupervisedTrainer


def save_state(trainer: SupervisedTrainer) -> None:
    """Write the trainer's resume state (rank 0 only): every trained tensor, the optimizer's moments,
    progress and RNG; atomic, so on failure the previous state stays."""
    if trainer.state_dir is None or trainer.inputs.rank != 0:
        return
    assert trainer.optimizer is not None
    state = {
        "config": trainer.config.resume_fingerprint(),
        "processes": world().size,
        "step": trainer.progress.step,
        "selections": [s.to_dict() for s in trainer.progress.selections],
        "ever_selected": [list(k) for k in trainer.progress.ever_selected],
        "best_miou": trainer.progress.best_miou,
        "best_step": trainer.progress.best_step,
        "best_weights": trainer.progress.best_weights,
        "best_selection": [list(k) for k in trainer.progress.best_selection],
        **({"best_calibration": trainer.progress.best_calibration.to_dict()} if trainer.progress.best_calibration is not None else {}),
        "val_history": trainer.progress.val_history,
        "loss_history": trainer.progress.loss_history,
        "fisher_seconds": trainer.progress.fisher_seconds,
        "train_seconds": trainer.progress.train_seconds,
        "toolbox": {n: t.detach().cpu() for n, t in trainer.toolbox.state_dict_of(trainer.toolbox.keys()).items()},
        "decoder": {n: t.detach().cpu() for n, t in trainer.model.decoder.state_dict().items()},
        "optimizer": optimizer_state_by_name(trainer.optimizer, trainer.optimizer_names),
        "cpu_rng": torch.random.get_rng_state(),
        **trainer.extra_state(),
    }
    write_state(trainer.state_dir, state)  # atomic; on failure the previous state stays
    trainer.saved_step = trainer.progress.step


def load_state(trainer: SupervisedTrainer) -> None:
    """Read the resume state back into the trainer, refusing one made with other settings or
    another process count (the resumed run would differ from an uninterrupted one)."""
    if trainer.state_dir is None:
        raise RunFolderError("nothing to resume: this run keeps no resume state; run without --resume")
    if trainer.config.selection == "full":
        raise RunFolderError("the full fine-tuning baseline (--selection full) keeps no backbone in its resume state; start over")
    state = read_state(trainer.state_dir)  # safetensors + JSON: nothing here can run code
    where = trainer.state_file
    fingerprint = plain(trainer.config.resume_fingerprint())
    saved = {k: v for k, v in (state.get("config") or {}).items() if k not in NOT_FINGERPRINTED}
    if saved != fingerprint:
        changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
        raise RunFolderError(
            f"{where}: cannot resume with different settings ({', '.join(changed)}); "
            "use the same options as the interrupted run, or start over with --overwrite"
        )
    processes = int(state.get("processes", 1))
    if processes != world().size:
        # Every rank draws its own crops, so another process count is another global batch and
        # other crops: the resumed run would silently differ from an uninterrupted one.
        launch = "without torchrun" if processes == 1 else f"under torchrun with --nproc-per-node/--nnodes giving {processes} processes"
        raise RunFolderError(
            f"{where}: this run was trained by {processes} process(es), now there are {world().size}; resume it {launch}, or start over with --overwrite"
        )
    try:
        restore(trainer, state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise RunFolderError(f"{where}: damaged resume state ({exc!r}); start over with --overwrite") from exc
    trainer.saved_step = trainer.progress.step
    trainer.load_extra_state(state)


def restore(trainer: SupervisedTrainer, state: dict[str, Any]) -> None:
    """Put a read state back into the model, optimizer, progress and RNG."""
    trainer.toolbox.load_state(state["toolbox"])
    trainer.model.decoder.load_state_dict(state["decoder"])
    progress = trainer.progress
    progress.step = int(state["step"])
    progress.selections = [Selection.from_dict(s) for s in state["selections"]]
    progress.ever_selected = {(k, int(l)) for k, l in state["ever_selected"]}
    progress.best_miou = state["best_miou"]
    progress.best_step = state["best_step"]
    progress.best_weights = dict(state["best_weights"])
    progress.best_selection = [(k, int(l)) for k, l in state["best_selection"]]
    calibration = state.get("best_calibration")  # absent: not calibrated, or a state from before calibration
    progress.best_calibration = None if calibration is None else Calibration.from_dict(calibration)
    progress.val_history = [tuple(v) for v in state["val_history"]]
    progress.loss_history = [tuple(v) for v in state["loss_history"]]
    progress.fisher_seconds = float(state["fisher_seconds"])
    progress.train_seconds = float(state["train_seconds"])
    torch.random.set_rng_state(state["cpu_rng"])
    apply_selection(trainer.toolbox, progress.selections[-1].selected)
    trainer.model.to(trainer.inputs.device)
    trainer._rebuild_optimizer()
    assert trainer.optimizer is not None
    restore_optimizer_state(trainer.optimizer, trainer.optimizer_names, state["optimizer"])
