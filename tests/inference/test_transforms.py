"""ResizeLongestSide: target sizes, coordinate scaling, torch/numpy agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mobilesam.inference.transforms import ResizeLongestSide, get_preprocess_shape


@pytest.mark.parametrize(
    "hw, expected",
    [
        ((770, 769), (1024, 1023)),
        ((534, 800), (684, 1024)),
        ((1200, 1800), (683, 1024)),
        ((1024, 1024), (1024, 1024)),
        ((1, 3000), (0, 1024)),
    ],
)
def test_preprocess_shape(hw, expected):
    assert get_preprocess_shape(*hw, 1024) == expected


def test_apply_image_is_pillow_bilinear_uint8():
    t = ResizeLongestSide(1024)
    img = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    out = t.apply_image(img)
    assert out.dtype == np.uint8 and out.shape == (1024, 683, 3)
    assert out.flags.writeable


@settings(max_examples=50, deadline=None)
@given(
    h=st.integers(1, 4000),
    w=st.integers(1, 4000),
    xy=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_coords_round_trip(h, w, xy):
    t = ResizeLongestSide(1024)
    pts = np.array([[xy[0] * w, xy[1] * h]])
    nh, nw = get_preprocess_shape(h, w, 1024)
    if nh == 0 or nw == 0:
        return
    out = t.apply_coords(pts, (h, w))
    back = out * np.array([w / nw, h / nh])
    np.testing.assert_allclose(back, pts, rtol=1e-9, atol=1e-9)
    assert out.dtype == np.float64


def test_boxes_equal_their_corners():
    t = ResizeLongestSide(1024)
    boxes = np.array([[10, 20, 300, 400], [0, 0, 799, 533]], dtype=float)
    out = t.apply_boxes(boxes, (534, 800))
    corners = t.apply_coords(boxes.reshape(-1, 2, 2), (534, 800)).reshape(-1, 4)
    np.testing.assert_array_equal(out, corners)


def test_torch_coords_match_numpy():
    t = ResizeLongestSide(1024)
    pts = np.array([[[12.5, 7.25], [799.0, 533.0]]])
    a = t.apply_coords(pts, (534, 800))
    b = t.apply_coords_torch(torch.tensor(pts), (534, 800))
    assert b.dtype == torch.float32
    np.testing.assert_allclose(b.numpy(), a, rtol=1e-6)
    bb = t.apply_boxes_torch(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), (534, 800))
    np.testing.assert_allclose(
        bb.numpy(), t.apply_boxes(np.array([[1.0, 2, 3, 4]]), (534, 800)), rtol=1e-6
    )


def test_apply_image_torch_shape():
    t = ResizeLongestSide(1024)
    out = t.apply_image_torch(torch.rand(1, 3, 534, 800) * 255)
    assert out.shape == (1, 3, 684, 1024)
