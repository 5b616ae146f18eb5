"""Training crops: reproducible per (seed, step, rank), nodata handling, padding, aligned augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_rasters import write_tif

from cegate_cli.data.crops import Augment, CropSampler, CropWindow, fixed_windows
from cegate_cli.data.folder import ImagePair
from cegate_cli.data.stats import BandStats

STATS = BandStats(("a", "b"), (100.0, 200.0), (10.0, 20.0))


def _scene(tmp_path, name, h, w, seed=0, nodata_rows=0):
    rng = np.random.default_rng(seed)
    image = np.stack([rng.integers(50, 150, (h, w)), rng.integers(150, 250, (h, w))]).astype(np.uint16)
    labels = rng.integers(0, 3, (h, w)).astype(np.uint8)
    image[:, :nodata_rows] = 0
    img = write_tif(tmp_path / "images" / f"{name}.tif", image, nodata=0)
    msk = write_tif(tmp_path / "masks" / f"{name}.tif", labels)
    return ImagePair(img, msk), image, labels


def test_same_seed_step_rank_gives_identical_batches(tmp_path) -> None:
    pairs = [_scene(tmp_path, f"s{i}", 80, 96, seed=i)[0] for i in range(3)]
    sampler = CropSampler(pairs, [(1, 2)] * 3, STATS, crop=32, ignore_index=255)
    first = sampler.sample(step=5, batch_size=4, seed=7)
    resumed = CropSampler(pairs, [(1, 2)] * 3, STATS, crop=32, ignore_index=255)  # a fresh process after a resume
    again = resumed.sample(step=5, batch_size=4, seed=7)
    assert first.windows == again.windows
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)
    other_rank = sampler.sample(step=5, batch_size=4, seed=7, rank=1)
    other_step = sampler.sample(step=6, batch_size=4, seed=7)
    assert other_rank.windows != first.windows and not torch.equal(other_rank.images, first.images)
    assert other_step.windows != first.windows
    assert first.images.shape == (4, 2, 32, 32) and first.images.dtype == torch.float32
    assert first.masks.shape == (4, 32, 32) and first.masks.dtype == torch.int64
    assert first.valid.dtype == torch.bool
    sampler.close()
    resumed.close()


def test_crops_match_the_file_without_augmentation(tmp_path) -> None:
    pair, image, labels = _scene(tmp_path, "a", 64, 64)
    with CropSampler([pair], [(2, 1)], BandStats(("b", "a"), (200.0, 100.0), (20.0, 10.0)), 16, 255, augment=False) as s:
        batch = s.sample(0, 3, seed=1)
    for i, w in enumerate(batch.windows):
        raw = image[:, w.row : w.row + 16, w.col : w.col + 16].astype(np.float32)
        expected = np.stack([(raw[1] - 200) / 20, (raw[0] - 100) / 10])
        np.testing.assert_allclose(batch.images[i].numpy(), expected, rtol=1e-6)
        np.testing.assert_array_equal(batch.masks[i].numpy(), labels[w.row : w.row + 16, w.col : w.col + 16])


def test_nodata_becomes_ignore_and_invalid(tmp_path) -> None:
    pair, image, _ = _scene(tmp_path, "a", 32, 32, nodata_rows=12)
    with CropSampler([pair], [(1, 2)], STATS, crop=32, ignore_index=255, augment=False) as sampler:
        batch = sampler.read([CropWindow(0, 0, 0)])
    assert not batch.valid[0, :12].any() and batch.valid[0, 12:].all()
    assert (batch.masks[0, :12] == 255).all() and (batch.masks[0, 12:] != 255).all()
    assert (batch.images[0, :, :12] == 0).all()


def test_small_scene_is_padded(tmp_path) -> None:
    pair, image, labels = _scene(tmp_path, "tiny", 20, 12)
    with CropSampler([pair], [(1, 2)], STATS, crop=32, ignore_index=99) as sampler:
        batch = sampler.sample(0, 2, seed=0)
    for i in range(2):
        assert int(batch.valid[i].sum()) == 20 * 12
        assert int((batch.masks[i] != 99).sum()) == 20 * 12
        assert (batch.images[i][:, ~batch.valid[i]] == 0).all()
    plain = CropSampler([pair], [(1, 2)], STATS, crop=32, ignore_index=99, augment=False).read([CropWindow(0, 0, 0)])
    np.testing.assert_array_equal(plain.masks[0, :20, :12].numpy(), labels)
    assert (plain.masks[0, 20:] == 99).all() and (plain.masks[0, :, 12:] == 99).all()


def test_augmentation_keeps_image_and_labels_aligned(tmp_path) -> None:
    # The label is a function of the pixel value, so any misalignment shows up as a mismatch.
    h = w = 40
    value = np.random.default_rng(3).integers(0, 4, (h, w)).astype(np.uint8)
    image = np.stack([value.astype(np.uint16) * 100 + 50] * 2)
    image[:, :, :6] = 0
    pair = ImagePair(write_tif(tmp_path / "images" / "a.tif", image, nodata=0), write_tif(tmp_path / "masks" / "a.tif", value))
    stats = BandStats(("a", "b"), (0.0, 0.0), (1.0, 1.0))
    with CropSampler([pair], [(1, 2)], stats, crop=24, ignore_index=255, augment=Augment(gain=0.0, offset=0.0)) as s:
        batches = [s.sample(step, 4, seed=0) for step in range(4)]
    transformed = 0
    for batch in batches:
        for i, w_ in enumerate(batch.windows):
            valid = batch.valid[i].numpy()
            labels = batch.masks[i].numpy()
            np.testing.assert_array_equal(labels[valid], (batch.images[i, 0].numpy()[valid] - 50) / 100)
            assert (labels[~valid] == 255).all() and (batch.images[i][:, ~valid] == 0).all()
            original = value[w_.row : w_.row + 24, w_.col : w_.col + 24].astype(np.int64)
            original = np.where(image[0, w_.row : w_.row + 24, w_.col : w_.col + 24] == 0, 255, original)
            transformed += not np.array_equal(labels, original)
    assert transformed > 0  # flips and rotations actually happened


def test_gain_offset_jitter_touches_valid_pixels_only() -> None:
    rng = np.random.default_rng(0)
    image = np.ones((3, 8, 8), np.float32)
    valid = np.ones((8, 8), bool)
    valid[:2] = False
    out, _, out_valid = Augment(flips=False, rotations=False).apply(np.where(valid, image, 0), None, valid, rng)
    assert (out[:, ~out_valid] == 0).all()
    per_band = out[:, out_valid]
    assert (np.abs(per_band - 1) <= 0.1 + 0.1 + 1e-6).all() and (per_band.std(axis=1) < 1e-6).all()
    assert len(set(np.round(per_band[:, 0], 6))) == 3  # each band its own gain/offset


def test_prefers_crops_with_labels(tmp_path) -> None:
    labels = np.full((128, 128), 255, np.uint8)
    labels[100:, 100:] = 1  # only a small corner is labeled
    img = write_tif(tmp_path / "images" / "a.tif", np.ones((2, 128, 128), np.uint16) * 100)
    msk = write_tif(tmp_path / "masks" / "a.tif", labels)
    with CropSampler([ImagePair(img, msk)], [(1, 2)], STATS, crop=32, ignore_index=255, augment=False) as s:
        batch = s.sample(0, 16, seed=0)
    labeled = (batch.masks != 255).flatten(1).sum(1)
    assert (labeled > 0).float().mean() > 0.5  # uniform placement would hit the corner ~11% of the time


def test_unlabeled_images_and_fixed_windows(tmp_path) -> None:
    _, image, _ = _scene(tmp_path, "a", 50, 70)
    path = tmp_path / "images" / "a.tif"
    with CropSampler([path], [(1, 2)], STATS, crop=32, ignore_index=255) as sampler:
        batch = sampler.sample(0, 2, seed=0)
        assert batch.masks is None and batch.images.shape == (2, 2, 32, 32)
        windows = sampler.fixed_windows(100, seed=0)
    assert windows == fixed_windows([path], 32, 100, seed=0)
    assert {(w.row, w.col) for w in windows} == {(0, 0), (0, 32), (0, 38), (18, 0), (18, 32), (18, 38)}
    assert fixed_windows([path], 32, 3, seed=1) == fixed_windows([path], 32, 3, seed=1)
    assert len(fixed_windows([path], 32, 3, seed=1)) == 3


def test_sampler_survives_pickling_and_reopens(tmp_path) -> None:
    import pickle

    pair, _, _ = _scene(tmp_path, "a", 40, 40)
    sampler = CropSampler([pair], [(1, 2)], STATS, crop=16, ignore_index=255)
    before = sampler.sample(3, 2, seed=0)
    sampler.close()
    clone = pickle.loads(pickle.dumps(sampler))
    assert torch.equal(clone.sample(3, 2, seed=0).images, before.images)
    assert torch.equal(sampler.sample(3, 2, seed=0).images, before.images)  # reopens after close()


@pytest.mark.parametrize("bad", [dict(step=-1), dict(batch_size=0)])
def test_rejects_bad_arguments(tmp_path, bad) -> None:
    pair, _, _ = _scene(tmp_path, "a", 40, 40)
    with CropSampler([pair], [(1, 2)], STATS, crop=16, ignore_index=255) as sampler:
        args = dict(step=0, batch_size=2, seed=0) | bad
        with pytest.raises(ValueError):
            sampler.sample(**args)


def test_rare_crops_see_a_rare_class_more_often_and_stay_reproducible(tmp_path) -> None:
    """One scene, class 1 only in a 16 x 16 corner of 128 x 128: plain crops rarely hold it, the
    best of four candidates (by class weight) far more often."""
    image = np.full((2, 128, 128), 120, np.uint16)
    labels = np.zeros((128, 128), np.uint8)
    labels[:16, :16] = 1
    pair = ImagePair(write_tif(tmp_path / "images" / "s.tif", image), write_tif(tmp_path / "masks" / "s.tif", labels))
    weights = [0.2, 5.0]

    def share_with_rare(candidates: int) -> float:
        sampler = CropSampler([pair], [(1, 2)], STATS, crop=32, ignore_index=255, augment=False, rare_class_weights=weights, candidates=candidates)
        batches = [sampler.sample(step, 8, seed=1) for step in range(25)]
        return float(np.mean([bool((m == 1).any()) for b in batches for m in b.masks]))

    plain, focused = share_with_rare(1), share_with_rare(4)
    assert plain < 0.15 and focused > 2 * plain
    sampler = CropSampler([pair], [(1, 2)], STATS, crop=32, ignore_index=255, rare_class_weights=weights, candidates=4)
    assert sampler.sample(3, 4, seed=2).windows == sampler.sample(3, 4, seed=2).windows  # still a function of (seed, step)
