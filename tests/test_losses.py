"""Nodata and unlabeled pixels never reach the loss."""

from __future__ import annotations

import torch

from cegate_cli.train.losses import masked_cross_entropy
from cegate_cli.train.schedule import lr_factor


def test_ignored_pixels_do_not_change_the_loss_or_its_gradient() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 4, (2, 8, 8))
    target[:, :3] = 255  # a nodata collar
    loss = masked_cross_entropy(logits, target, 255)
    loss.backward()
    assert torch.all(logits.grad[:, :, :3] == 0)
    changed = logits.detach().clone()
    changed[:, :, :3] = 100.0 * torch.randn_like(changed[:, :, :3])
    assert torch.allclose(masked_cross_entropy(changed, target, 255), loss.detach())
    labeled = target != 255
    expected = torch.nn.functional.cross_entropy(logits.detach().permute(0, 2, 3, 1)[labeled], target[labeled])
    assert torch.allclose(loss.detach(), expected)


def test_all_ignored_gives_zero_with_a_graph() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.full((1, 4, 4), 255), 255)
    assert loss.item() == 0.0 and loss.requires_grad


def test_pixel_weights_scale_each_pixel() -> None:
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    half = torch.full((1, 4, 4), 0.5)
    assert torch.allclose(masked_cross_entropy(logits, target, 255, half), 0.5 * masked_cross_entropy(logits, target, 255))


def test_poly_schedule_warms_up_then_decays_to_zero() -> None:
    factors = [lr_factor(step, 100, 10) for step in range(100)]
    assert factors[0] == 0.1 and factors[9] == 1.0
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert lr_factor(100, 100, 10) == 0.0
