"""Calibration: class-score offsets fitted on validation pixels, stored in the head's class bias."""

from __future__ import annotations

import pytest
import torch

from cegate_cli.model.decoder import DECODERS, build_decoder
from cegate_cli.run.weights import with_class_offsets
from cegate_cli.train.calibrate import MIN_CLASS_PIXELS, fit_class_offsets


def _overpredicting(count: int = 20000, shift: float = 1.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes with shares 60/30/10 whose scores are the true log-likelihoods (no prior), so
    the rarest class is predicted far more often than it occurs, as a class-weighted loss does."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), count, replacement=True, generator=generator)
    means = torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5]])
    points = means[labels] + torch.randn(count, 2, generator=generator)
    scores = -0.5 * ((points[:, None, :] - means[None]) ** 2).sum(-1)
    scores[:, 2] += shift  # and the rare class pushed up on top
    return scores, labels


def test_offsets_undo_an_overpredicted_class_and_raise_validation_miou() -> None:
    scores, labels = _overpredicting()
    calibration = fit_class_offsets(scores, labels, 3)
    assert calibration.changed
    assert calibration.miou_after > calibration.miou_before + 0.02
    offsets = calibration.offsets
    assert offsets[2] - offsets[0] < -1.0  # the overpredicted class's scores come down against the common one's
    predicted = (scores + torch.tensor(offsets)).argmax(1)
    assert (predicted == 2).float().mean() < (scores.argmax(1) == 2).float().mean()


def test_scores_that_are_already_right_stay_untouched() -> None:
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 4, (8000,), generator=generator)
    scores = torch.nn.functional.one_hot(labels, 4).float() * 5 + torch.randn(8000, 4, generator=generator)
    calibration = fit_class_offsets(scores, labels, 4)
    assert calibration.offsets == (0.0, 0.0, 0.0, 0.0) and not calibration.changed
    assert calibration.miou_after == calibration.miou_before


def test_a_class_with_too_few_validation_pixels_keeps_offset_zero() -> None:
    scores, labels = _overpredicting(count=4000)
    scarce = (labels == 2).nonzero().flatten()[MIN_CLASS_PIXELS // 2 :]
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[scarce] = False  # fewer than MIN_CLASS_PIXELS of class 2 remain
    calibration = fit_class_offsets(scores[keep], labels[keep], 3)
    assert calibration.offsets[2] == 0.0
    assert calibration.changed  # the others still moved: class 2 was left alone, not the search


@pytest.mark.parametrize("name", DECODERS)
def test_offsets_in_the_class_bias_shift_every_pixel_of_every_head(name: str) -> None:
    torch.manual_seed(0)
    head = build_decoder(name, embed_dim=8, num_levels=2, in_chans=3, num_classes=4).eval()
    features = [torch.randn(1, 8, 4, 4) for _ in range(2)]
    images = torch.randn(1, 3, 16, 16)
    before = head(features, images)
    tensors = {f"decoder.{k}": v.clone() for k, v in head.state_dict().items()}
    offsets = (0.5, -1.0, 0.0, 2.0)
    shifted = with_class_offsets(tensors, offsets)
    head.load_state_dict({k[len("decoder.") :]: v for k, v in shifted.items()})
    after = head(features, images)
    assert torch.allclose(after - before, torch.tensor(offsets).view(1, 4, 1, 1).expand_as(before), atol=1e-5)
    assert torch.allclose(head.classifier.bias.detach() - tensors["decoder.classifier.bias"], torch.tensor(offsets))
