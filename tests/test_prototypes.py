"""The head's blend with the target's class centroids (train/prototypes.py), alone and in a run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cegate_cli.cli import app
from cegate_cli.options.train import SelfTrainConfig, TrainConfig
from cegate_cli.pipelines.adapt import AdaptOptions, adapt
from cegate_cli.run import read_manifest
from cegate_cli.train import guard
from cegate_cli.train.prototypes import MIN_PIXELS, POSITIONS_PER_TILE, classifier_inputs, fit_prototypes, with_prototypes

CLASSIFIER = ("decoder.classifier.weight", "decoder.classifier.bias")


def _clusters(shift: float, n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes in 2-D: around (-1, 0) and (+1, 0), moved by `shift` along x, and their labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(2).repeat_interleave(n)
    centres = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])[labels] + torch.tensor([shift, 0.0])
    return centres + 0.3 * torch.randn(2 * n, 2, generator=g), labels


def _source_classifier() -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary at x = 0, where the source's two classes part."""
    return torch.tensor([[-4.0, 0.0], [4.0, 0.0]])[:, :, None, None], torch.zeros(2)


def test_blend_zero_keeps_the_classifier_and_the_blend_moves_the_boundary_to_the_targets_clusters() -> None:
    weight, bias = _source_classifier()
    features, labels = _clusters(shift=1.2)  # the target's classes lie right of the source's boundary
    scores = features @ weight[:, :, 0, 0].T + bias
    source_accuracy = float((scores.argmax(1) == labels).float().mean())
    kept = fit_prototypes(weight, bias, features, scores, blend=0.0)
    assert torch.equal(kept.weight, weight) and torch.equal(kept.bias, bias)
    fit = fit_prototypes(weight, bias, features, scores, blend=1.0)
    blended = (features @ fit.weight[:, :, 0, 0].T + fit.bias).argmax(1)
    accuracy = float((blended == labels).float().mean())
    assert source_accuracy < 0.7 and accuracy > 0.9
    assert fit.fitted_classes == (0, 1) and fit.vectors == features.shape[0]
    assert fit.blended_shares == pytest.approx((0.5, 0.5), abs=0.1) and fit.source_shares[1] > 0.7
    assert 0.0 < fit.agreement < 1.0 and "change class" in fit.sentence(["a", "b"])


def test_a_class_the_target_hardly_shows_keeps_the_source_row() -> None:
    weight = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])[:, :, None, None]
    bias = torch.tensor([0.0, 0.0, -100.0])  # class 2 is never the model's choice
    features, _ = _clusters(shift=0.5)
    scores = features @ weight[:, :, 0, 0].T + bias
    fit = fit_prototypes(weight, bias, features, scores, blend=0.5)
    assert fit.fitted_classes == (0, 1)
    assert torch.equal(fit.weight[2], weight[2]) and fit.bias[2] == bias[2]
    assert not torch.equal(fit.weight[0], weight[0])


def test_with_prototypes_replaces_the_classifier_and_nothing_else() -> None:
    weight, bias = _source_classifier()
    features, _ = _clusters(shift=0.5)
    fit = fit_prototypes(weight, bias, features, features @ weight[:, :, 0, 0].T, blend=0.5)
    tensors = {"decoder.classifier.weight": weight, "decoder.classifier.bias": bias, "decoder.norm.weight": torch.ones(2)}
    changed = with_prototypes(tensors, fit, "decoder.")
    assert changed.keys() == tensors.keys() and changed["decoder.norm.weight"] is tensors["decoder.norm.weight"]
    assert torch.equal(changed["decoder.classifier.weight"], fit.weight) and tensors["decoder.classifier.weight"] is weight


def test_features_are_read_at_valid_positions_only_and_bounded_per_tile() -> None:
    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = torch.nn.Conv2d(3, 2, 1)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.classifier(images[:, :, ::2, ::2])  # features at half the pixels' resolution

    model = torch.nn.Module()
    model.decoder = Head()
    images = torch.randn(2, 3, 8, 8)
    images[:, 0, :4] = 1000.0  # the top half of every tile is nodata: its features must not come back
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    valid[:, :4] = False
    features, scores = classifier_inputs(model, [SimpleNamespace(images=images, valid=valid)], model.decoder, seed=0)
    assert features.shape == (2 * 8, 3) and scores.shape == (2 * 8, 2)  # 4 x 4 feature grid, half valid, two tiles
    assert float(features[:, 0].abs().max()) < 1000.0
    assert POSITIONS_PER_TILE >= 16 and MIN_PIXELS > 1


SMALL = TrainConfig(steps=4, batch_size=2, crop=32, lr=2e-3, warmup_steps=1, val_every=2, val_crops=2, save_every=2, fisher_samples=4, select="3", seed=5)
FIRST = SelfTrainConfig(confidence=0.3, stats_every=1, adapt_steps=3, prototypes=0.5)


@pytest.fixture(scope="module")
def demo(demo_dataset):
    return demo_dataset(n_source=3, n_target=2, size=80, seed=2, n_target_eval=1)


def _options(demo, out: Path, **changes) -> AdaptOptions:
    return AdaptOptions(source=demo.source_dir, out=out, backbone="tiny", train=SMALL, target=demo.target_dir, self_training=replace(FIRST, **changes))


def test_a_target_run_blends_only_the_kept_models_classifier_and_says_so(demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "SOURCE_DROP", -1.0)  # the guard keeps the source model
    adapt(_options(demo, tmp_path / "plain", prototypes=0.0))
    adapt(_options(demo, tmp_path / "blended"))
    plain, blended = (load_file(str(tmp_path / name / "adapter.safetensors")) for name in ("plain", "blended"))
    assert plain.keys() == blended.keys()
    assert {k for k in plain if not torch.equal(plain[k], blended[k])} == set(CLASSIFIER)
    a, b = (load_file(str(tmp_path / name / "adapter_last.safetensors")) for name in ("plain", "blended"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the adapted model as trained stays as it was
    manifest = read_manifest(tmp_path / "blended")
    record = manifest.adaptation.prototypes
    assert record["blend"] == 0.5 and record["vectors"] > 0 and "change class" in record["sentence"]
    assert read_manifest(tmp_path / "plain").adaptation.prototypes is None
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path / "blended")])
    assert shown.exit_code == 0 and "prototypes" in shown.output and "change class" in shown.output


def test_resume_after_training_reproduces_the_blend(demo, tmp_path: Path) -> None:
    adapt(_options(demo, tmp_path / "full"))
    partial = adapt(_options(demo, tmp_path / "resumed"), stop_after=6)
    assert not partial.outcome.completed
    adapt(replace(_options(demo, tmp_path / "resumed"), resume=True))
    a, b = (load_file(str(tmp_path / name / "adapter.safetensors")) for name in ("full", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_prototypes_out_of_range_is_one_line() -> None:
    from cegate_cli.errors import InputError

    with pytest.raises(InputError, match="--prototypes 1.5"):
        replace(FIRST, prototypes=1.5).check()


def test_a_joint_run_blends_its_last_models_classifier(demo, tmp_path: Path) -> None:
    adapt(_options(demo, tmp_path / "joint", schedule="joint"))
    best, last = (load_file(str(tmp_path / "joint" / name)) for name in ("adapter.safetensors", "adapter_last.safetensors"))
    assert {k for k in last if not torch.equal(best[k], last[k])} == set(CLASSIFIER)
    assert read_manifest(tmp_path / "joint").adaptation.prototypes["blend"] == 0.5
