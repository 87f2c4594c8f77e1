"""Mask utilities: boxes, stability, NMS, RLE, small regions, grids, crops, windowed resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilesam.inference.grids import (
    build_all_layer_point_grids,
    build_point_grid,
    generate_crop_boxes,
    is_box_near_crop_edge,
    uncrop_masks,
)
from mobilesam.inference.masks import (
    area_from_rle,
    batched_mask_to_box,
    batched_nms,
    calculate_stability_score,
    coco_encode_rle,
    mask_to_rle,
    nms,
    remove_small_regions,
    rle_to_mask,
)
from mobilesam.inference.window_resize import MaskResizer, window_rle


def _blobs(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 1, h // 4 + 1, w // 4 + 1, generator=g)
    up = torch.nn.functional.interpolate(low, (h, w), mode="bilinear", align_corners=False)
    return up[:, 0] > 0.3


# ------------------------------------------------------------------- boxes
def test_mask_to_box_matches_brute_force_and_empty_is_zero():
    masks = _blobs(12, 37, 53, 0)
    masks[3] = False
    masks[5] = False
    masks[5, 36, 52] = True  # single pixel in the corner
    boxes = batched_mask_to_box(masks)
    assert boxes.dtype == torch.int64 and boxes.shape == (12, 4)
    for m, b in zip(masks.numpy(), boxes.tolist()):
        ys, xs = np.nonzero(m)
        expect = [0, 0, 0, 0] if ys.size == 0 else [xs.min(), ys.min(), xs.max(), ys.max()]
        assert b == [int(v) for v in expect]
    assert batched_mask_to_box(masks.reshape(3, 4, 37, 53)).shape == (3, 4, 4)


def test_stability_score_is_iou_of_thresholded_masks():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 20, 30, generator=g) * 3
    got = calculate_stability_score(logits, 0.0, 1.0)
    inter = (logits > 1).sum((1, 2)).float()
    union = (logits > -1).sum((1, 2)).float()
    torch.testing.assert_close(got, inter / union)
    assert torch.isnan(calculate_stability_score(torch.full((1, 4, 4), -5.0), 0.0, 1.0)).all()


# --------------------------------------------------------------------- NMS
def _brute_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            x0, y0 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            x1, y1 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
            ai = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            aj = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            union = ai + aj - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed, thr):
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 80, size=(60, 2))
    wh = rng.integers(1, 40, size=(60, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float64)
    scores = rng.random(60)
    scores[10:14] = scores[3]  # ties keep input order
    got = nms(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), thr).tolist()
    assert got == _brute_nms(boxes, scores, thr)


def test_batched_nms_is_per_category_and_sorted_by_score():
    rng = np.random.default_rng(7)
    xy = rng.integers(0, 50, size=(40, 2))
    boxes = np.concatenate([xy, xy + rng.integers(5, 30, size=(40, 2))], axis=1).astype(float)
    scores = rng.random(40)
    cats = rng.integers(0, 3, size=40)
    got = batched_nms(
        torch.tensor(boxes, dtype=torch.float32),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(cats),
        0.5,
    ).tolist()
    expect = []
    for c in range(3):
        idx = np.flatnonzero(cats == c)
        expect += [int(idx[k]) for k in _brute_nms(boxes[idx], scores[idx], 0.5)]
    assert sorted(got) == sorted(expect)
    assert list(scores[got]) == sorted(scores[got], reverse=True)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0


# --------------------------------------------------------------------- RLE
def test_rle_round_trips_and_agrees_with_pycocotools():
    from pycocotools import mask as mask_utils

    masks = _blobs(6, 31, 47, 3)
    masks[0] = True  # starts with foreground: counts begin with 0
    masks[1] = False
    masks[2, 0, 0] = False
    rles = mask_to_rle(masks)
    assert rles[0]["counts"][0] == 0
    for m, rle in zip(masks.numpy(), rles):
        assert rle["size"] == [31, 47]
        np.testing.assert_array_equal(rle_to_mask(rle), m)
        assert area_from_rle(rle) == int(m.sum())
        coco = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 31, 47))
        np.testing.assert_array_equal(decoded, m)
        compressed = coco_encode_rle(rle)
        assert isinstance(compressed["counts"], str)
        assert compressed["counts"] == coco["counts"].decode()
    # chunking does not change the result
    assert mask_to_rle(masks, chunk_pixels=31 * 47) == rles


def test_window_rle_equals_full_mask_rle():
    rng = np.random.default_rng(0)
    h, w = 23, 17
    for y0, x0, wh, ww in [(0, 0, 23, 17), (5, 3, 18, 9), (0, 4, 23, 6), (10, 0, 13, 1)]:
        m = rng.random((wh, ww)) > 0.4
        m[-1, :] = True  # runs that touch the window's bottom (joins across columns)
        full = np.zeros((h, w), dtype=bool)
        full[y0 : y0 + wh, x0 : x0 + ww] = m
        assert window_rle(m, y0, x0, (h, w)) == mask_to_rle(torch.from_numpy(full)[None])[0]
    assert window_rle(None, 0, 0, (h, w)) == {"size": [h, w], "counts": [h * w]}


def test_rle_to_mask_rejects_wrong_counts():
    with pytest.raises(ValueError, match="sum"):
        rle_to_mask({"size": [2, 2], "counts": [1, 2]})


# ----------------------------------------------------------- small regions
def test_remove_small_regions_holes_islands_and_largest_kept():
    m = np.zeros((40, 40), dtype=bool)
    m[5:30, 5:30] = True
    m[10:12, 10:12] = False  # small hole (4 px)
    m[35:37, 35:37] = True  # small island (4 px)
    filled, changed = remove_small_regions(m, 10, "holes")
    assert changed and filled[10:12, 10:12].all() and filled[35:37, 35:37].all()
    cleaned, changed = remove_small_regions(filled, 10, "islands")
    assert changed and not cleaned[35:37, 35:37].any() and cleaned[5:30, 5:30].all()
    same, changed = remove_small_regions(cleaned, 10, "islands")
    assert not changed and np.array_equal(same, cleaned)
    tiny = np.zeros((20, 20), dtype=bool)
    tiny[1:3, 1:3] = True
    tiny[10:13, 10:13] = True
    kept, changed = remove_small_regions(tiny, 100, "islands")
    assert changed and kept[10:13, 10:13].all() and not kept[1:3, 1:3].any()
    with pytest.raises(ValueError):
        remove_small_regions(m, 10, "both")


# ------------------------------------------------------------ grids, crops
def test_point_grid_and_layers():
    np.testing.assert_allclose(
        build_point_grid(2), [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    )
    grids = build_all_layer_point_grids(16, 2, 2)
    assert [len(g) for g in grids] == [256, 64, 16]


def test_crop_boxes_cover_the_image_with_overlap():
    boxes, layers = generate_crop_boxes((300, 500), 2, 512 / 1500)
    assert boxes[0] == [0, 0, 500, 300] and layers[0] == 0
    assert layers.count(1) == 4 and layers.count(2) == 16
    for lay in (1, 2):
        cover = np.zeros((300, 500), dtype=int)
        for b, li in zip(boxes, layers):
            if li == lay:
                cover[b[1] : b[3], b[0] : b[2]] += 1
        assert cover.min() >= 1 and cover.max() > 1  # every pixel covered, crops overlap
    # x0 in the outer loop
    layer1 = [b for b, li in zip(boxes, layers) if li == 1]
    assert layer1[0][:2] == [0, 0] and layer1[1][0] == 0 and layer1[1][1] > 0


def test_uncrop_and_edge_filter():
    m = torch.ones(2, 4, 6, dtype=torch.bool)
    full = uncrop_masks(m, [3, 2, 9, 6], 10, 12)
    assert full.shape == (2, 10, 12) and full.sum() == 2 * 24 and full[0, 2, 3]
    boxes = torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60]])
    near = is_box_near_crop_edge(boxes, [100, 100, 300, 300], [0, 0, 300, 300])
    assert near.tolist() == [True, False]
    # an edge shared with the image does not count
    assert not is_box_near_crop_edge(boxes[1:], [0, 0, 100, 100], [0, 0, 100, 100]).item()


# ------------------------------------------------------- windowed resizing
@pytest.mark.parametrize("out_hw", [(70, 45), (300, 460)])
def test_window_logits_equal_postprocess_and_bound_holds(out_hw, small_model):
    from mobilesam.inference.transforms import get_preprocess_shape

    s = small_model.image_size
    input_hw = get_preprocess_shape(*out_hw, s)
    g = torch.Generator().manual_seed(0)
    low = torch.nn.functional.interpolate(
        torch.randn(6, 1, 8, 8, generator=g) * 4, (s // 4, s // 4), mode="bilinear"
    )
    low[2] = -5.0  # nothing above the level
    full = small_model.postprocess_masks(low, input_hw, out_hw)[:, 0]
    r = MaskResizer((s // 4, s // 4), s, input_hw, out_hw)
    exact = calculate_stability_score(full, 0.0, 1.0)
    bound = r.stability_upper_bound(low[:, 0].numpy(), 0.0, 1.0)
    for i in range(6):
        res = r.window_logits(low[i, 0].numpy(), -1.0)
        if i == 2:
            assert res is None
            continue
        y0, x0, win = res
        ref = full[i].numpy()
        np.testing.assert_allclose(win, ref[y0 : y0 + win.shape[0], x0 : x0 + win.shape[1]],
                                   atol=2e-5)  # fmt: skip
        outside = np.ones_like(ref, dtype=bool)
        outside[y0 : y0 + win.shape[0], x0 : x0 + win.shape[1]] = False
        assert (ref[outside] <= -1.0 + 1e-5).all()
        if torch.isfinite(exact[i]):
            assert bound[i] >= float(exact[i]) - 1e-6


@pytest.mark.parametrize("out_hw", [(70, 45), (45, 70), (300, 460)])
def test_low_res_pixels_past_the_used_extent_do_not_matter(out_hw, small_model):
    from mobilesam.inference.transforms import get_preprocess_shape

    s = small_model.image_size
    input_hw = get_preprocess_shape(*out_hw, s)
    rows, cols = MaskResizer((s // 4, s // 4), s, input_hw, out_hw).used_extent()
    assert rows < s // 4 or cols < s // 4  # none of these shapes is square
    low = torch.randn(2, 1, s // 4, s // 4, generator=torch.Generator().manual_seed(1))
    changed = low.clone()
    changed[:, :, rows:] = 1e3
    changed[:, :, :, cols:] = -1e3
    torch.testing.assert_close(
        small_model.postprocess_masks(changed, input_hw, out_hw),
        small_model.postprocess_masks(low, input_hw, out_hw),
    )


def test_extents_are_the_first_and_last_rows_and_columns_reaching_the_level():
    g = torch.Generator().manual_seed(4)
    low = torch.randn(4, 32, 24, generator=g) - 2.5
    low[1] = -10.0  # none
    low[2] = -10.0
    low[2, 5, 7] = 3.0  # a single pixel
    got = MaskResizer.extents(low.numpy(), 0.0)
    for m in range(4):
        above = low[m].numpy() > 0.0 - 1e-3
        ys, xs = np.flatnonzero(above.any(1)), np.flatnonzero(above.any(0))
        want = [-1] * 4 if ys.size == 0 else [ys[0], ys[-1], xs[0], xs[-1]]
        assert got[m].tolist() == want
    assert got[2].tolist() == [5, 5, 7, 7]
