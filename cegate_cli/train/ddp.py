"""Training under torchrun: DistributedDataParallel over the trained parameters only.

The trainers (`SupervisedTrainer`, `SelfTrainer`) stay single-process code. `for_world(cls)`
returns `cls` itself on one process and, under torchrun, a subclass with `DistributedTraining`
in front, which changes four things:

- each rank draws its own crops (`TrainInputs.rank` feeds the sampler's seed), so the global
  batch is world size x `batch_size`;
- Fisher scores are pooled over all ranks' samples before the selection, and the ranks check
  that they train the same parameters before every (re)wrap;
- the trainer's `forward_model`, which the training forward pass runs through, becomes a
  DistributedDataParallel wrapper of `model` whose reducer knows only the trained tensors
  (active modules + head): gradients of those are averaged during the backward pass, and the
  frozen backbone is never broadcast or all-reduced (DDP's constructor would otherwise
  broadcast every parameter from rank 0, the whole backbone, at every wrap);
- the wrapper is rebuilt whenever the trained set changes (reselection, resume), because a DDP
  reducer is fixed to the parameters it was built with.

`model` itself stays the plain model throughout: Fisher scoring and the self-training teacher use
it, because per-sample Fisher gradients must not be averaged across ranks (the mean of squares is
not the square of the mean) and the teacher never trains.
"""

from __future__ import annotations

import gc
import inspect
from collections.abc import Iterable
from itertools import chain
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cegate_cli.infra.distributed import check_agreement, local_device, rank_log, world
from cegate_cli.toolbox.fisher import FisherScores, Selection, normalize_within_kind
from cegate_cli.train.reporter import SilentReporter
from cegate_cli.train.supervised import SupervisedTrainer, TrainInputs

TrainerT = TypeVar("TrainerT", bound=SupervisedTrainer)


# GroupNorm heads keep no running statistics, so no buffer needs syncing before each forward
# (every buffer is on the ignore list anyway). torch 2.14 renamed the flag.
_NO_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def reduce_fisher(scores: FisherScores) -> FisherScores:
    """Fisher scores over every rank's samples: the pooled mean, then normalised within kinds.

    Each rank scored its own crops; the raw score is a mean of squared gradients, so the pooled
    score weights each rank by its sample count (sum of sums / total samples), exactly what one
    process scoring all those crops would get. The sum runs in float64 in one all-reduce whose
    result is the same on every rank, so every rank then selects the same modules.
    """
    if not world().active:
        return scores
    keys = sorted(scores.raw)
    check_agreement(keys, "the candidate modules")
    packed = torch.tensor([scores.raw[key] * scores.samples for key in keys] + [float(scores.samples)], dtype=torch.float64)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    total = float(packed[-1])
    raw = {key: float(packed[i]) / total for i, key in enumerate(keys)}
    return FisherScores(raw=raw, normalized=normalize_within_kind(raw), samples=int(total))


def wrap_trained_parts(model: nn.Module, trained: Iterable[nn.Parameter], device: torch.device) -> DistributedDataParallel:
    """A DDP wrapper of `model` that synchronises exactly `trained` and nothing else.

    Everything else (frozen backbone, bypassed modules, every buffer) is put on DDP's ignore
    list, so the constructor broadcasts only the trained tensors from rank 0 (a cheap guarantee
    that all ranks start equal) and the reducer buckets only their gradients.
    """
    keep = {id(p) for p in trained}
    ignore = [name for name, p in model.named_parameters() if id(p) not in keep]
    ignore += [name for name, _ in model.named_buffers()]
    for tensor in chain(model.parameters(), model.buffers()):
        if hasattr(tensor, "_ddp_ignored"):  # left by an earlier wrap; DDP reads it as "ignore me"
            del tensor._ddp_ignored
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignore)
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=False,  # every active module and the whole head take part in each step
        **_NO_BUFFER_SYNC,
    )


class DistributedTraining(SupervisedTrainer):
    """A trainer under torchrun. `for_world` puts it in front of a trainer class's bases, so
    `DistributedTraining` -> `SelfTrainer` -> `SupervisedTrainer` is the order methods resolve in."""

    def __init__(self, inputs: TrainInputs, *args: Any, **kwargs: Any) -> None:
        current = world()
        inputs.rank = current.rank
        inputs.device = torch.device(local_device(inputs.device))
        super().__init__(inputs, *args, **kwargs)
        if not current.is_main:
            self.reporter = SilentReporter()  # one progress display for the job, drawn by rank 0
        self._wrapped: tuple[int, ...] | None = None
        """Identities of the trained tensors `forward_model` wraps now; None before the first wrap."""

    def reduce_scores(self, scores: FisherScores) -> FisherScores:
        return reduce_fisher(super().reduce_scores(scores))

    def select(self, step: int) -> Selection:
        selection = super().select(step)
        rank_log(
            "selection",
            step=step,
            selected=[list(key) for key in selection.selected],
            samples=selection.scores.samples,
            normalized={f"{k}@{l}": v for (k, l), v in sorted(selection.scores.normalized.items())},
        )
        return selection

    def compute_loss(self, step: int) -> torch.Tensor:
        """The trainer's own loss, its forward pass through a DDP wrapper of what trains now.

        The wrapper is (re)built here, at the first step after the trained set changed, rather
        than at the selection itself: every rank reaches this point in the same order, and a
        reselection that keeps the same tensors keeps the wrapper.
        """
        self._wrap_trained_parts()
        return super().compute_loss(step)

    def _wrap_trained_parts(self) -> None:
        """Point `forward_model` at a DDP wrapper of exactly the tensors that train now."""
        named = self.trainable_named()
        ids = tuple(id(p) for p in named.values())
        if ids == self._wrapped:
            return
        check_agreement(sorted(named), "the trained parameters")
        self.forward_model = self.model
        gc.collect()  # release the old reducer (and its gradient hooks) before a new one registers
        wrapper = wrap_trained_parts(self.model, named.values(), self.inputs.device)
        self.forward_model = wrapper
        self._wrapped = ids
        synced = [p for name, p in self.model.named_parameters() if name not in wrapper.parameters_to_ignore]
        rank_log("ddp_wrap", step=self.progress.step, tensors=len(synced), numel=sum(p.numel() for p in synced))


_VARIANTS: dict[type[SupervisedTrainer], type[SupervisedTrainer]] = {}
"""One distributed variant per trainer class, made once, so `for_world(cls)` is always the same class."""


def _distributed_variant(trainer_class: type[SupervisedTrainer]) -> type[SupervisedTrainer]:
    if trainer_class not in _VARIANTS:
        bases = (DistributedTraining, trainer_class)
        _VARIANTS[trainer_class] = type(f"Distributed{trainer_class.__name__}", bases, {"__doc__": trainer_class.__doc__})
    return _VARIANTS[trainer_class]


def for_world(trainer_class: type[TrainerT]) -> type[TrainerT]:
    """`trainer_class` on one process; under torchrun, its DistributedDataParallel variant (a
    subclass of it, so it is still a `trainer_class` to every caller)."""
    if not world().active:
        return trainer_class
    return cast("type[TrainerT]", _distributed_variant(trainer_class))
