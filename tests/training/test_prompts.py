"""Prompt sampling from ground-truth masks."""

from __future__ import annotations

import pytest
import torch

from mobilesam.training.prompts import (
    correction_points,
    jittered_boxes,
    mask_boxes,
    sample_points,
)


def _masks() -> torch.Tensor:
    m = torch.zeros(3, 40, 50, dtype=torch.bool)
    m[0, 5:15, 10:30] = True
    m[1, 20:38, 2:6] = True
    m[2, 0:40, 49] = True  # touches the right border
    return m


def test_points_fall_inside_their_masks():
    m = _masks()
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        pts, lab = sample_points(m, gen)
        assert pts.shape == (3, 1, 2) and lab.shape == (3, 1) and (lab == 1).all()
        x, y = pts[:, 0, 0].long(), pts[:, 0, 1].long()
        assert m[torch.arange(3), y, x].all()


def test_boxes_are_tight_and_jitter_is_bounded():
    m = _masks()
    assert mask_boxes(m).tolist() == [[10, 5, 29, 14], [2, 20, 5, 37], [49, 0, 49, 39]]
    gen = torch.Generator().manual_seed(1)
    tight = mask_boxes(m)
    for _ in range(20):
        b = jittered_boxes(m, gen, max_jitter=3.0)
        assert (b - tight).abs().max() <= 3.0 + 1e-6
        assert (b[:, 0] <= b[:, 2]).all() and (b[:, 1] <= b[:, 3]).all()
        assert b[:, 0::2].min() >= 0 and b[:, 0::2].max() <= 49
        assert b[:, 1::2].min() >= 0 and b[:, 1::2].max() <= 39
    assert not torch.equal(jittered_boxes(m, gen), jittered_boxes(m, gen))


def test_correction_points_land_in_the_error_with_the_right_label():
    gt = _masks()
    pred = torch.zeros_like(gt)
    pred[0] = gt[0]
    pred[0, 30:35, 40:45] = True  # false positive only
    pred[1, 20:30, 2:6] = True  # part of the object missing: false negative only
    pred[2] = gt[2]  # perfect
    gen = torch.Generator().manual_seed(2)
    for _ in range(10):
        pts, lab = correction_points(pred, gt, gen)
        x, y = pts[:, 0, 0].long(), pts[:, 0, 1].long()
        assert lab[0, 0] == 0 and pred[0, y[0], x[0]] and not gt[0, y[0], x[0]]
        assert lab[1, 0] == 1 and gt[1, y[1], x[1]] and not pred[1, y[1], x[1]]
        assert lab[2, 0] == 1 and gt[2, y[2], x[2]]


def test_empty_masks_are_refused():
    empty = torch.zeros(1, 8, 8, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="empty"):
        sample_points(empty, gen)
    with pytest.raises(ValueError, match="empty"):
        mask_boxes(empty)
