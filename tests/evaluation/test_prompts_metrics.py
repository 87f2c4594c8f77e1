"""Evaluation prompts from reference masks and the IoU metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mobilesam.evaluation
from mobilesam.evaluation import background_point, center_point, mask_box, mean_iou, two_points
from mobilesam.inference.masks import mask_iou


def test_center_point_is_the_deepest_pixel():
    m = np.zeros((30, 40), bool)
    m[5:16, 10:21] = True  # 11 x 11 square centred at (15, 10)
    assert center_point(m).tolist() == [15.0, 10.0]
    m[5:16, 10:31] = True  # 11 x 21: a plateau along row 10; ties go to the first pixel
    assert center_point(m).tolist() == [15.0, 10.0]
    ring = np.zeros((41, 41), bool)
    yy, xx = np.mgrid[:41, :41]
    r = np.hypot(yy - 20, xx - 20)
    ring[(r >= 10) & (r <= 18)] = True
    x, y = center_point(ring).astype(int)
    assert ring[y, x]  # inside the ring, not at its (empty) centre


def test_center_point_treats_the_image_border_as_boundary():
    m = np.zeros((20, 20), bool)
    m[:, :12] = True  # touches the left edge
    x, _ = center_point(m)
    assert 4 <= x <= 7  # in the middle of the 12-pixel-wide band, not at the edge


def test_box_and_background_point():
    m = np.zeros((30, 40), bool)
    m[5:16, 10:31] = True
    assert mask_box(m).tolist() == [10, 5, 30, 15]
    bg = background_point(m, np.array([20.0, 10.0]), 12.0)
    assert bg is not None and not m[int(bg[1]), int(bg[0])]
    assert math.isclose(float(np.hypot(*(bg - [20, 10]))), 12.0, abs_tol=0.75)
    full = np.ones((10, 10), bool)
    assert background_point(full, np.array([5.0, 5.0]), 3.0) is None
    coords, labels = two_points(m, 12.0)
    assert labels.tolist() == [1, 0] and coords[0].tolist() == [15.0, 10.0]
    with pytest.raises(ValueError, match="empty"):
        center_point(np.zeros((4, 4), bool))


def test_evaluation_uses_the_package_mask_iou():
    # the public name stays, as the one IoU of mobilesam.inference.masks
    assert mobilesam.evaluation.mask_iou is mask_iou
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert math.isclose(mask_iou(a, b), 4 / 12)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        mask_iou(a, np.zeros((3, 3), bool))


def test_mean_iou():
    assert mean_iou([0.5, 1.0, 0.0]) == 0.5
    assert math.isnan(mean_iou([]))
