"""bench.suite and bench.backends on tiny inputs: prompts, fidelity, the torch backends."""

from __future__ import annotations

import numpy as np
import pytest

from mobilesam.bench.backends import torch_backend
from mobilesam.bench.suite import BenchConfig, _fidelity, _make_backends, _prompts


def test_prompts_are_inside_the_image_and_as_many_as_asked():
    image = np.zeros((30, 50, 3), np.uint8)
    point, grid = _prompts(image, 7)
    assert point.tolist() == [25.0, 13.5]
    assert grid.shape == (7, 2)
    assert (grid[:, 0] > 0).all() and (grid[:, 0] < 50).all()
    assert (grid[:, 1] > 0).all() and (grid[:, 1] < 30).all()
    # a square count is a full lattice of cell centres
    _, lattice = _prompts(image, 4)
    assert sorted(map(tuple, lattice.tolist())) == [(12.5, 7.5), (12.5, 22.5), (37.5, 7.5),
                                                    (37.5, 22.5)]  # fmt: skip


def _outputs(masks_one, masks_many, shift=0.0):
    emb = np.arange(8, dtype=np.float32).reshape(2, 4) + shift
    low = np.zeros((3, 4, 4), np.float32) + 2 * shift
    return {
        "embedding": emb,
        "one": (masks_one, np.array([0.5, 0.6, 0.7]) + shift, low),
        "many": (masks_many, None, None),
    }


def test_fidelity_against_the_reference():
    one = np.zeros((3, 4, 4), bool)
    one[:, :2] = True
    many = np.zeros((2, 1, 4, 4), bool)
    many[0, 0, 0] = True
    same = _fidelity(_outputs(one, many), _outputs(one.copy(), many.copy()))
    assert same == {
        "embedding_max_abs": 0.0,
        "low_res_logits_max_abs": 0.0,
        "iou_pred_max_abs": 0.0,
        "mask_iou_min_1": 1.0,
        "mask_iou_mean_many": 1.0,
        "mask_iou_min_many": 1.0,
    }
    other_one = one.copy()
    other_one[1, 1] = False  # mask 1: rows 0-1 of the reference, row 0 here -> IoU 0.5
    other_many = many.copy()
    other_many[1, 0, 3, 3] = True  # reference empty, this one pixel -> IoU 0
    got = _fidelity(_outputs(one, many), _outputs(other_one, other_many, shift=0.25))
    assert got["embedding_max_abs"] == 0.25 and got["low_res_logits_max_abs"] == 0.5
    assert got["iou_pred_max_abs"] == pytest.approx(0.25)
    assert got["mask_iou_min_1"] == 0.5
    assert (got["mask_iou_mean_many"], got["mask_iou_min_many"]) == (0.5, 0.0)


def test_unknown_backend_is_refused(tmp_path):
    cfg = BenchConfig(image=np.zeros((8, 8, 3), np.uint8), backends=("torch-exact", "gpu"))
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        _make_backends("m", None, cfg, tmp_path)


def test_torch_backends_answer_like_the_predictor(small_model, dog_image):
    from mobilesam.inference.predictor import SamPredictor

    image = np.ascontiguousarray(dog_image[::4, ::4])
    point = np.array([100.0, 70.0])
    reference = SamPredictor(small_model)
    reference.set_image(image)
    ref_masks, ref_iou, _ = reference.predict(point[None], np.array([1]))

    exact = torch_backend(small_model, optimised=False)
    assert exact.name == "torch-exact" and exact.fp32
    emb = exact.encode(exact.prepare(image))
    np.testing.assert_allclose(emb, reference.get_image_embedding().numpy(), rtol=0, atol=1e-6)
    exact.set_image(image)
    masks, iou, low = exact.predict_one(point)
    np.testing.assert_array_equal(masks, ref_masks)
    many_masks, many_iou, many_low = exact.predict_many(np.stack([point, point + 20]))
    assert many_masks.shape == (2, *ref_masks.shape) and many_low.shape[:2] == (2, 3)
    np.testing.assert_allclose(many_iou[0], ref_iou, atol=1e-5)

    fast = torch_backend(small_model, optimised=True)
    fast.set_image(image)
    assert fast.name == "torch-optimised"
    assert (fast.predict_one(point)[0] == ref_masks).mean() > 0.999
