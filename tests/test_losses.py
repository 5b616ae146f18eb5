"""Nodata and unlabeled pixels never reach the loss."""

from __future__ import annotations

import pytest
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


# -- class imbalance ---------------------------------------------------------------------------------


def test_balanced_weights_favour_rare_classes_and_average_one() -> None:
    from cegate_cli.train.losses import balanced_class_weights

    weights = balanced_class_weights({0: 5000, 1: 100, 2: 400, 4: 500}, num_classes=5)
    present = [0, 1, 2, 4]
    assert weights[present].mean().item() == pytest.approx(1.0)
    assert weights[1] > weights[2] > weights[4] > weights[0]  # rarer class, larger weight
    assert weights[1] / weights[0] == pytest.approx((5000 / 100) ** 0.5, rel=1e-5)  # square root of the frequency ratio
    assert weights[3].item() == 1.0  # absent from the labels: never weighed


def test_class_weight_power_sets_how_far_rare_classes_are_favoured() -> None:
    from cegate_cli.train.losses import balanced_class_weights

    counts = {0: 5000, 1: 100, 2: 400, 4: 500}
    assert balanced_class_weights(counts, num_classes=5, power=0.0).tolist() == [1.0] * 5  # every class alike
    quarter = balanced_class_weights(counts, num_classes=5, power=0.25)
    assert quarter[1] / quarter[0] == pytest.approx((5000 / 100) ** 0.25, rel=1e-5)


def test_class_weighted_cross_entropy_is_torchs_weighted_mean_over_labeled_pixels() -> None:
    from cegate_cli.train.losses import masked_cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[0, 0] = 255
    weight = torch.tensor([0.5, 2.0, 1.0])
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight, ignore_index=255)
    assert masked_cross_entropy(logits, target, 255, class_weight=weight).item() == pytest.approx(expected.item(), rel=1e-6)


def test_soft_dice_is_zero_for_a_perfect_prediction_and_ignores_unlabeled_pixels() -> None:
    from cegate_cli.train.losses import soft_dice

    target = torch.tensor([[[0, 1], [2, 255]]])
    perfect = torch.nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 100
    perfect[0, :, 1, 1] = torch.tensor([0.0, 0.0, 100.0])  # a wrong guess where nothing is labeled counts for nothing
    assert soft_dice(perfect, target, 255, smooth=0.0).item() == pytest.approx(0.0, abs=1e-6)
    wrong = perfect.roll(1, dims=1)
    assert soft_dice(wrong, target, 255, smooth=0.0).item() == pytest.approx(1.0, abs=1e-6)
