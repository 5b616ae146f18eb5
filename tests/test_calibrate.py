"""Calibration: class-score offsets fitted on validation pixels, stored in the head's class bias."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cegate_cli.adapt import AdaptOptions, adapt
from cegate_cli.cli import app
from cegate_cli.decoder import DECODERS, build_decoder
from cegate_cli.run import read_manifest
from cegate_cli.run.weights import with_class_offsets
from cegate_cli.train.calibrate import MIN_CLASS_PIXELS, fit_class_offsets
from cegate_cli.train.config import TrainConfig


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
    head.load_state_dict({k[len("decoder."):]: v for k, v in shifted.items()})
    after = head(features, images)
    assert torch.allclose(after - before, torch.tensor(offsets).view(1, 4, 1, 1).expand_as(before), atol=1e-5)
    assert torch.allclose(head.classifier.bias.detach() - tensors["decoder.classifier.bias"], torch.tensor(offsets))


SMALL = TrainConfig(
    steps=6, batch_size=2, crop=32, lr=2e-3, warmup_steps=1, val_every=3, val_crops=4, save_every=2,
    fisher_samples=3, select="4", seed=3,
)


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=1, size=80, seed=1)


def test_the_mean_searched_counts_only_classes_the_validation_labels_hold() -> None:
    # Class 3 has no validation pixel but is predicted on 50: in a mean that counted it (IoU 0),
    # pushing it out of the map would pay, so the search must not count it.
    from cegate_cli.metrics import ConfusionMatrix

    scores, labels = _overpredicting(count=20000, shift=0.0)
    scores = torch.cat([scores, torch.full((len(scores), 1), -100.0)], dim=1)
    scores[:50, 3] = 100.0
    matrix = ConfusionMatrix(4, ignore_index=-1)
    matrix.update(scores.argmax(1), labels)
    labeled_mean = float(matrix.iou()[:3].mean())
    assert fit_class_offsets(scores, labels, 4).miou_before == pytest.approx(labeled_mean)
    assert labeled_mean > matrix.miou()  # the validation's own mean counts the predicted-only class


def test_a_prediction_of_the_ignore_index_counts_for_nothing_as_in_validation() -> None:
    scores, labels = _overpredicting(count=20000, shift=0.0)
    with_gap = fit_class_offsets(scores, labels, 3, ignore_index=1)  # id 1 unused: its predictions are not scored
    assert with_gap.miou_before != fit_class_offsets(scores, labels, 3).miou_before


def test_a_run_keeps_its_calibration_in_the_best_weights_and_run_json(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cegate_cli.train import supervised
    from cegate_cli.train.calibrate import Calibration

    # Known offsets, so the test sees them travel whatever the small run's own search finds.
    monkeypatch.setattr(supervised, "fit_class_offsets",
                        lambda scores, labels, num_classes, ignore_index: Calibration((0.5, -0.25, 0.0, 1.0)[:num_classes], 0.4, 0.5, len(labels)))
    options = AdaptOptions(source=demo.source_dir, out=tmp_path / "on", backbone="tiny", train=SMALL)
    adapt(options)
    adapt(replace(options, out=tmp_path / "off", train=replace(SMALL, calibrate=False)))
    on, off = read_manifest(tmp_path / "on"), read_manifest(tmp_path / "off")
    assert "calibration" not in off.metrics
    calibration = on.metrics["calibration"]
    assert calibration["offsets"] == [0.5, -0.25, 0.0, 1.0] and on.classes.num_classes == 4
    best_on = load_file(str(tmp_path / "on" / "adapter.safetensors"))
    best_off = load_file(str(tmp_path / "off" / "adapter.safetensors"))
    # Training is the same; only the best weights' class bias differs, by the offsets.
    for name in best_on:
        if name != "decoder.classifier.bias":
            assert torch.equal(best_on[name], best_off[name]), name
    assert torch.allclose(best_on["decoder.classifier.bias"] - best_off["decoder.classifier.bias"], torch.tensor(calibration["offsets"]))
    last_on = load_file(str(tmp_path / "on" / "adapter_last.safetensors"))
    assert torch.equal(last_on["decoder.classifier.bias"], load_file(str(tmp_path / "off" / "adapter_last.safetensors"))["decoder.classifier.bias"])
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path / "on")])
    assert shown.exit_code == 0, shown.output
    assert "calibrated class scores water +0.50, vegetation -0.25, bare soil +1.00: validation mIoU 0.400 -> 0.500" in shown.output
