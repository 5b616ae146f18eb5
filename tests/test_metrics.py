"""Confusion matrix arithmetic on hand-made cases, and evaluate_scene on real GeoTIFFs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from predict_rasters import class_table, write_scene
from rasterio.transform import from_origin

from cegate_cli.data.metrics import ConfusionMatrix, evaluate_scene
from cegate_cli.errors import DataError

# target -> prediction pairs: 3 classes, class 2 never in the labels
TARGET = np.array([0, 0, 0, 0, 1, 1, 1, 255, 0, 1])
PRED = np.array([0, 0, 1, 2, 1, 1, 0, 2, 0, 1])


def test_known_matrix_and_scores():
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(PRED, TARGET)
    assert cm.matrix.tolist() == [[3, 1, 1], [1, 3, 0], [0, 0, 0]]
    assert cm.total == 9  # the ignored label is not counted
    iou = cm.iou()
    assert iou[0] == pytest.approx(3 / (3 + 1 + 2))
    assert iou[1] == pytest.approx(3 / (3 + 1 + 1))
    assert iou[2] == 0.0  # predicted, never true: a false positive class counts
    assert cm.miou() == pytest.approx((0.5 + 0.6 + 0.0) / 3)
    assert cm.overall_accuracy() == pytest.approx(6 / 9)
    f1 = cm.f1()
    assert f1[0] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2)) and f1[1] == pytest.approx(6 / 8)
    assert cm.precision()[0] == pytest.approx(3 / 4) and cm.recall()[0] == pytest.approx(3 / 5)


def test_classes_absent_from_labels_and_prediction_are_left_out_of_miou():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert math.isnan(cm.iou()[2]) and math.isnan(cm.iou()[3])
    assert cm.miou() == pytest.approx((0.5 + 0.5) / 2)
    d = cm.to_dict(class_table(4))
    assert d["classes"][2]["iou"] is None and d["classes"][0]["name"] == "water"
    assert d["miou"] == pytest.approx(0.5) and d["pixels"] == 3


def test_torch_inputs_valid_mask_and_nodata_predictions():
    cm = ConfusionMatrix(3)
    pred = torch.tensor([[0, 1], [255, 2]])
    target = torch.tensor([[0, 1], [1, 1]])
    valid = torch.tensor([[True, False], [True, True]])
    cm.update(pred, target, valid)
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]  # (1,0) nodata pred, (0,1) invalid


def test_out_of_range_ids_are_data_errors():
    cm = ConfusionMatrix(2)
    with pytest.raises(DataError, match=r"label holds class id\(s\) \[7\]"):
        cm.update(np.array([0, 1]), np.array([7, 1]))
    with pytest.raises(DataError, match="prediction"):
        cm.update(np.array([3, 1]), np.array([0, 1]))


def test_merge_adds_counts_and_empty_matrix_is_nan():
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    assert math.isnan(a.miou()) and math.isnan(a.overall_accuracy())
    a.update(np.array([0]), np.array([0]))
    b.update(np.array([1]), np.array([0]))
    assert a.merge(b).matrix.tolist() == [[1, 1], [0, 0]]


def test_evaluate_scene_streams_two_masks_and_ignores_nodata(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=(700, 130)).astype(np.uint8)
    pred = truth.copy()
    wrong = rng.random(truth.shape) < 0.1
    pred[wrong] = (truth[wrong] + 1) % 3
    truth[:5] = 255  # unlabeled rows
    pred[-3:] = 255  # prediction nodata
    truth_path = write_scene(tmp_path / "truth.tif", truth, nodata=255)
    pred_path = write_scene(tmp_path / "pred.tif", pred, nodata=255)
    cm = evaluate_scene(pred_path, truth_path, num_classes=3)
    keep = np.ones(truth.shape, dtype=bool)
    keep[:5] = keep[-3:] = False
    expected = ConfusionMatrix(3)
    expected.update(pred[keep], truth[keep])
    np.testing.assert_array_equal(cm.matrix, expected.matrix)
    assert cm.total == keep.sum()
    assert cm.overall_accuracy() == pytest.approx(1 - wrong[keep].mean())


def test_evaluate_scene_refuses_a_different_grid(tmp_path):
    a = write_scene(tmp_path / "a.tif", np.zeros((20, 20), dtype=np.uint8))
    b = write_scene(tmp_path / "b.tif", np.zeros((20, 21), dtype=np.uint8))
    with pytest.raises(DataError, match="20 x 20"):
        evaluate_scene(a, b, num_classes=2)
    c = write_scene(tmp_path / "c.tif", np.zeros((20, 20), dtype=np.uint8), transform=from_origin(0, 0, 10, 10))
    with pytest.raises(DataError, match="geotransforms"):
        evaluate_scene(a, c, num_classes=2)
