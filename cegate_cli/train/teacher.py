"""The EMA teacher of self-training, holding only what the student trains.

Published self-training code (DACS, DAFormer) keeps a whole second copy of the network as the
teacher. Here the backbone is frozen and shared, so the teacher is just an exponential moving
average of the trained tensors (active toolbox modules + head); its forward pass runs the
student's own module tree with those tensors swapped in (`torch.func.functional_call`). The
extra memory is the size of the trained tensors, a few percent of the model, never the backbone.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


def trained_tensors(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters that receive gradients now, under their module paths (functional_call's names).

    Gating freezes the backbone and every bypassed module, so this is exactly the active modules
    and the head.
    """
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def ema_factor(step: int, alpha: float, warmup: bool = True) -> float:
    """Weight of the old teacher after update number `step` (0-based).

    With `warmup` (DACS), min(1 - 1/(step + 1), alpha): the teacher follows a freshly initialised
    student closely at first (it would otherwise average in its random start for hundreds of
    steps) and settles at `alpha`. A teacher that starts from a trained run needs no warm-up.
    """
    if not warmup:
        return alpha
    return min(1.0 - 1.0 / (step + 1), alpha)


class EMATeacher:
    """teacher = a * teacher + (1 - a) * student over the student's trained tensors."""

    def __init__(self, model: nn.Module, alpha: float = 0.99, warmup: bool = True) -> None:
        self.model = model
        self.alpha = alpha
        self.warmup = warmup
        self.tensors: dict[str, torch.Tensor] = {}

    def sync(self) -> None:
        """Follow a (re)selection: keep the average of tensors still trained, start newly trained
        ones from the student's values, forget the ones a reselection dropped (their modules are
        bypassed, so teacher and student run them identically: not at all)."""
        current = trained_tensors(self.model)
        self.tensors = {
            name: self.tensors[name] if name in self.tensors and self.tensors[name].shape == p.shape else p.detach().clone() for name, p in current.items()
        }

    def restart(self) -> None:
        """Start over from the student's trained tensors as they are now (a trained model that
        self-training continues from)."""
        self.tensors = {}
        self.sync()

    @torch.no_grad()
    def update(self, step: int) -> float:
        """One EMA step after optimizer step `step`; returns the factor used."""
        a = ema_factor(step, self.alpha, self.warmup)
        current = trained_tensors(self.model)
        for name, teacher in self.tensors.items():
            student = current.get(name)
            if student is None:  # pragma: no cover - sync() runs after every selection
                raise RuntimeError(f"teacher tensor {name} is no longer trained; call sync() after reselecting")
            teacher.mul_(a).add_(student.detach().to(teacher.dtype), alpha=1.0 - a)
        return a

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Teacher logits: the student's modules with the averaged tensors, in eval mode."""
        was_training = self.model.training
        self.model.eval()
        try:
            return functional_call(self.model, self.tensors, (images,), strict=False)
        finally:
            self.model.train(was_training)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def to(self, device: torch.device) -> EMATeacher:
        self.tensors = {name: t.to(device) for name, t in self.tensors.items()}
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().cpu().clone() for name, t in self.tensors.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a saved teacher; its names must be the student's trained tensors now."""
        current = trained_tensors(self.model)
        if set(state) != set(current):
            missing = sorted(set(current) - set(state))[:3]
            extra = sorted(set(state) - set(current))[:3]
            raise ValueError(f"saved teacher does not match the trained tensors (missing {missing}, unexpected {extra})")
        self.tensors = {name: state[name].to(current[name].device, current[name].dtype).clone() for name in current}
