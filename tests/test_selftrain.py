"""Self-training pieces on their own: the EMA teacher, pseudo-label masking, ClassMix, strong view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cegate_cli.backbone.tiny import build_tiny_vit
from cegate_cli.model.segmentation import build_model
from cegate_cli.toolbox import ToolboxConfig
from cegate_cli.train.classmix import classmix_masks, mix
from cegate_cli.train.gating import apply_selection
from cegate_cli.train.pseudo import pseudo_label, pseudo_label_stats
from cegate_cli.train.strong_view import StrongAugment, gaussian_blur
from cegate_cli.train.teacher import EMATeacher, ema_factor, trained_tensors

IGNORE = 255


@pytest.fixture()
def built():
    built = build_model(build_tiny_vit(), ("blue", "green", "red", "nir"), 4, ToolboxConfig(), decoder="unet", seed=0)
    apply_selection(built.toolbox, [("lora", 2), ("adapter", 4), ("earth", 5)])
    return built


def test_ema_factor_follows_the_dacs_warmup() -> None:
    assert ema_factor(0, 0.99) == 0.0  # the first update copies the student
    assert ema_factor(1, 0.99) == pytest.approx(0.5)
    assert ema_factor(9, 0.99) == pytest.approx(0.9)
    assert ema_factor(99, 0.99) == pytest.approx(0.99)
    assert ema_factor(5000, 0.99) == 0.99
    assert ema_factor(0, 0.99, warmup=False) == 0.99


def test_teacher_update_is_the_ema_of_the_student(built) -> None:
    teacher = EMATeacher(built.model, alpha=0.99)
    teacher.sync()
    student = trained_tensors(built.model)
    before = {name: t.clone() for name, t in teacher.tensors.items()}
    with torch.no_grad():
        for p in student.values():
            p.add_(torch.randn_like(p))
    used = teacher.update(step=40)
    assert used == pytest.approx(min(1 - 1 / 41, 0.99))
    for name, t in teacher.tensors.items():
        expected = used * before[name] + (1 - used) * student[name].detach()
        torch.testing.assert_close(t, expected)
    # Not aliased: the student moving again leaves the teacher where it was.
    snapshot = {name: t.clone() for name, t in teacher.tensors.items()}
    with torch.no_grad():
        next(iter(student.values())).add_(1.0)
    for name, t in teacher.tensors.items():
        assert torch.equal(t, snapshot[name])


def test_teacher_memory_is_only_the_trained_tensors(built) -> None:
    model = built.model
    teacher = EMATeacher(model)
    teacher.sync()
    trained = [p for p in model.parameters() if p.requires_grad]
    trained_bytes = sum(p.numel() * p.element_size() for p in trained)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert teacher.nbytes() == trained_bytes
    # Count distinct storages the teacher holds: exactly its own tensors, none of the model's.
    model_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    teacher_storages = {t.untyped_storage().data_ptr() for t in teacher.tensors.values()}
    assert not teacher_storages & model_storages
    assert sum(t.untyped_storage().nbytes() for t in teacher.tensors.values()) == trained_bytes
    assert not any(name.startswith("backbone.vit.") and "lora" not in name and "bottleneck" not in name for name in teacher.tensors)
    assert {n.split(".")[0] for n in teacher.tensors} == {"backbone", "decoder"}
    assert teacher.nbytes() < 0.5 * model_bytes
    # A reselection drops bypassed modules from the teacher and adds new ones.
    apply_selection(built.toolbox, [("lora", 2), ("earth", 0)])
    teacher.sync()
    assert teacher.nbytes() == sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    assert not any(".4." in n and "bottleneck" in n for n in teacher.tensors)


def test_teacher_runs_the_shared_model_with_its_own_tensors(built) -> None:
    model = built.model
    teacher = EMATeacher(model)
    teacher.sync()
    images = torch.randn(2, 4, 32, 32)
    model.eval()
    with torch.no_grad():
        expected = model(images)
    torch.testing.assert_close(teacher(images), expected)
    name = next(n for n in teacher.tensors if n.startswith("decoder.classifier.bias"))
    teacher.tensors[name] += 5.0
    assert not torch.allclose(teacher(images), expected)
    with torch.no_grad():
        torch.testing.assert_close(model(images), expected)  # the student is untouched by the swap


def test_pseudo_labels_mask_unconfident_and_invalid_pixels() -> None:
    # 1 crop, 2 x 3 pixels, 3 classes: probabilities set through logits.
    probabilities = torch.tensor(
        [
            [[0.98, 0.50, 0.01], [0.10, 0.97, 0.30]],
            [[0.01, 0.40, 0.98], [0.05, 0.02, 0.40]],
            [[0.01, 0.10, 0.01], [0.85, 0.01, 0.30]],
        ]
    )[None]
    valid = torch.tensor([[[True, True, True], [True, True, False]]])
    pseudo = pseudo_label(probabilities.log(), valid, threshold=0.968, ignore_index=IGNORE)
    assert pseudo.labels.tolist() == [[[0, 0, 1], [2, 0, IGNORE]]]
    assert pseudo.confident.tolist() == [[[True, False, True], [False, True, False]]]
    assert pseudo.weight.tolist() == [pytest.approx(3 / 5)]  # the invalid pixel is in neither count
    assert pseudo.confident_only(IGNORE).tolist() == [[[0, IGNORE, 1], [IGNORE, 0, IGNORE]]]
    stats = pseudo_label_stats(7, pseudo, 3)
    assert stats["step"] == 7 and stats["confident_share"] == pytest.approx(0.6)
    assert stats["class_share"] == [pytest.approx(0.6), pytest.approx(0.2), pytest.approx(0.2)]
    assert stats["confident_class_share"] == pytest.approx([2 / 3, 1 / 3, 0.0], abs=1e-3)
    nothing = pseudo_label(probabilities.log(), torch.zeros_like(valid), threshold=0.5, ignore_index=IGNORE)
    assert nothing.weight.tolist() == [0.0] and not nothing.confident.any()


def test_class_balance_keeps_every_class_of_an_underconfident_teacher() -> None:
    # An under-confident teacher: nothing reaches 0.968, class 1 is always surer than class 0.
    confidence = torch.tensor([0.70, 0.72, 0.74, 0.76, 0.90, 0.91, 0.92, 0.93, 0.55, 0.30])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 2])
    logits = torch.full((1, 3, 1, 10), -10.0)
    for i, (c, k) in enumerate(zip(confidence, labels)):
        rest = (1 - c) / 2  # the other two classes share the remainder
        logits[0, :, 0, i] = torch.log(torch.full((3,), float(rest)))
        logits[0, k, 0, i] = torch.log(c)
    valid = torch.ones(1, 1, 10, dtype=torch.bool)
    fixed = pseudo_label(logits, valid, threshold=0.968, ignore_index=IGNORE)
    assert not fixed.confident.any() and fixed.weight.item() == 0.0
    balanced = pseudo_label(logits, valid, threshold=0.968, ignore_index=IGNORE, class_balance=0.5)
    confident = balanced.confident[0, 0].tolist()
    # Class 0 (5 pixels): its top 3 count; class 1 (4): its top 2; class 2's only pixel is below
    # the floor (1 + 1/3) / 2 = 0.67, near chance, so it never counts.
    assert confident == [False, True, True, True, False, False, True, True, False, False]
    assert balanced.weight.item() == pytest.approx(0.5)
    # A confident pixel still counts under the global threshold, whatever its rank.
    logits[0, :, 0, 0] = torch.tensor([8.0, 0.0, 0.0])
    assert pseudo_label(logits, valid, threshold=0.968, ignore_index=IGNORE, class_balance=0.5).confident[0, 0, 0]


def test_classmix_pastes_half_the_source_classes() -> None:
    labels = torch.tensor(
        [
            [[0, 0, 1, 1], [2, 2, 3, 3], [IGNORE, 0, 1, 2], [3, 3, 3, 3]],
            [[1, 1, 1, 1], [1, 1, 1, 1], [IGNORE, IGNORE, 1, 1], [1, 1, 1, 1]],
        ]
    )
    paste = classmix_masks(labels, IGNORE, np.random.default_rng(0))
    for i, count in ((0, 2), (1, 1)):  # 4 classes -> 2 pasted; 1 class -> pasted (half rounded up)
        pasted = torch.unique(labels[i][paste[i]])
        assert len(pasted) == count
        assert IGNORE not in pasted.tolist()
        assert torch.equal(paste[i], torch.isin(labels[i], pasted))  # whole classes, never parts
    source = torch.ones(2, 1, 4, 4)
    target = torch.zeros(2, 1, 4, 4)
    pseudo = torch.full((2, 4, 4), 7)
    pseudo[1, 0, 0] = IGNORE
    target_valid = pseudo != IGNORE
    mixed = mix(source, labels, target, pseudo, torch.tensor([0.25, 0.5]), target_valid, paste)
    assert torch.equal(mixed.images[:, 0] == 1, paste)
    assert torch.equal(mixed.labels, torch.where(paste, labels, pseudo))
    assert torch.equal(mixed.pixel_weight[0], torch.where(paste[0], 1.0, 0.25))
    assert torch.equal(mixed.pixel_weight[1], torch.where(paste[1], 1.0, 0.5))
    per_pixel = (torch.arange(32).reshape(2, 4, 4) % 2).float()  # e.g. the confidence mask
    mixed = mix(source, labels, target, pseudo, per_pixel, target_valid, paste)
    assert torch.equal(mixed.pixel_weight, torch.where(paste, 1.0, per_pixel))
    assert torch.equal(mixed.valid, paste | target_valid)


def test_strong_view_keeps_labels_aligned_and_invalid_pixels_zero() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) / 100
    labels = torch.arange(2 * 8 * 8).reshape(2, 8, 8)
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    valid[:, :2] = False
    images = images * valid[:, None]
    augment = StrongAugment(gain=0.5, offset=0.5, noise=0.2, blur_probability=1.0)
    out_images, out_labels, out_weight, out_valid = augment(images, labels, labels.float(), valid, np.random.default_rng(3))
    assert torch.equal(out_labels.float(), out_weight)  # labels and weights move together
    for i in range(2):
        # Geometry is a permutation of pixels: the valid mask moves with the labels.
        assert sorted(out_labels[i][out_valid[i]].tolist()) == sorted(labels[i][valid[i]].tolist())
    assert bool((out_images[~out_valid.unsqueeze(1).expand_as(out_images)] == 0).all())
    assert not torch.allclose(out_images, images)
    flat = torch.ones(2, 6, 6)
    torch.testing.assert_close(gaussian_blur(flat, 1.0), flat)  # a blur keeps a constant image


def test_prior_alignment_lifts_a_class_the_teacher_under_predicts() -> None:
    """A teacher that calls 90% of the target class 0 while the source is half and half: aligned to
    the source prior, the weaker class-1 pixels become class 1, and the shares move to the prior."""
    from cegate_cli.train.pseudo import align_to_prior, prior_distance, pseudo_label

    # 10 pixels: class-1 probability 0.05, 0.1, ..., 0.5 (ties broken toward class 0 below 0.5)
    p1 = torch.linspace(0.05, 0.5, 10)
    logits = torch.stack([torch.log(1 - p1), torch.log(p1)]).view(1, 2, 1, 10)
    valid = torch.ones(1, 1, 10, dtype=torch.bool)
    plain = pseudo_label(logits, valid, 0.5, 255)
    prior = torch.tensor([0.5, 0.5])
    aligned = pseudo_label(logits, valid, 0.5, 255, prior=prior)
    assert int((plain.labels == 1).sum()) == 0
    assert int((aligned.labels == 1).sum()) >= 4  # the most class-1-like pixels flip
    probabilities = align_to_prior(logits.softmax(dim=1), valid, prior)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(1, 1, 10))
    assert probabilities[:, 1].mean() > logits.softmax(dim=1)[:, 1].mean()  # moved toward the prior
    assert prior_distance([1.0, 0.0], prior) == pytest.approx(0.5)
