"""SamAutomaticMaskGenerator: parity with the reference, fast vs exact, records, errors."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from mobilesam import SamAutomaticMaskGenerator
from mobilesam.inference.amg_options import AmgOptions
from mobilesam.inference.masks import rle_to_mask

# The reference outputs of ../shared/parity for the exact path (the "amg" cases) are checked
# by tests/test_parity.py, which runs the whole shared check.


def _masks(anns):
    out = []
    for a in anns:
        s = a["segmentation"]
        out.append(rle_to_mask(s) if isinstance(s, dict) else s)
    return out


def _assert_same(exact, fast):
    assert len(exact) == len(fast) > 0
    for e, f, me, mf in zip(exact, fast, _masks(exact), _masks(fast)):
        assert int((me != mf).sum()) <= 16
        assert abs(e["predicted_iou"] - f["predicted_iou"]) < 1e-5
        assert abs(e["stability_score"] - f["stability_score"]) < 1e-3
        assert np.abs(np.subtract(e["bbox"], f["bbox"])).max() <= 1
        assert e["point_coords"] == f["point_coords"] and e["crop_box"] == f["crop_box"]
        assert f["area"] == int(mf.sum())


@pytest.mark.slow
def test_fast_path_gives_the_exact_masks(vit_t_model, dog_image):
    img = np.ascontiguousarray(dog_image[::2, ::2])  # 267x400, keeps it quick
    params = dict(points_per_side=6, pred_iou_thresh=0.15, stability_score_thresh=0.2)
    exact = SamAutomaticMaskGenerator(vit_t_model, **params).generate(img)
    fast = SamAutomaticMaskGenerator(vit_t_model, fast=True, **params).generate(img)
    _assert_same(exact, fast)


@pytest.mark.slow
def test_fast_path_with_crops_small_regions_and_rle(vit_t_model, dog_image):
    img = np.ascontiguousarray(dog_image[::2, ::2])
    params = dict(
        points_per_side=4,
        pred_iou_thresh=0.1,
        stability_score_thresh=0.05,
        crop_n_layers=1,
        min_mask_region_area=200,
        output_mode="uncompressed_rle",
    )
    exact = SamAutomaticMaskGenerator(vit_t_model, **params).generate(img)
    fast = SamAutomaticMaskGenerator(vit_t_model, fast=True, **params).generate(img)
    _assert_same(exact, fast)


def test_records_and_embedding_reuse(small_model, dog_image, monkeypatch):
    img = np.ascontiguousarray(dog_image[::4, ::4])
    gen = SamAutomaticMaskGenerator(
        small_model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, fast=True
    )
    anns = gen.generate(img)
    assert anns, "thresholds of 0 keep something"
    h, w = img.shape[:2]
    for a in anns:
        assert set(a) == {
            "segmentation",
            "area",
            "bbox",
            "predicted_iou",
            "point_coords",
            "stability_score",
            "crop_box",
        }
        assert a["segmentation"].shape == (h, w) and a["segmentation"].dtype == bool
        assert a["area"] == int(a["segmentation"].sum())
        assert a["crop_box"] == [0, 0, w, h]
        assert len(a["point_coords"]) == 1 and len(a["bbox"]) == 4
    calls = []
    monkeypatch.setattr(gen.predictor, "set_image", lambda *a, **k: calls.append(1))
    again = gen.generate(img)
    assert calls == [] and len(again) == len(anns)
    assert set(gen.timings) >= {"encoder", "decoder", "postprocess"}


def test_coco_rle_output(small_model, dog_image):
    from pycocotools import mask as mask_utils

    img = np.ascontiguousarray(dog_image[::4, ::4])
    params = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    binary = SamAutomaticMaskGenerator(small_model, fast=True, **params).generate(img)
    coco = SamAutomaticMaskGenerator(
        small_model, fast=True, output_mode="coco_rle", **params
    ).generate(img)
    assert len(coco) == len(binary)
    for b, c in zip(binary, coco):
        assert isinstance(c["segmentation"]["counts"], str)
        rle = {**c["segmentation"], "counts": c["segmentation"]["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), b["segmentation"])


def test_argument_errors(small_model):
    with pytest.raises(ValueError, match="exactly one"):
        SamAutomaticMaskGenerator(small_model, points_per_side=None)
    with pytest.raises(ValueError, match="exactly one"):
        SamAutomaticMaskGenerator(small_model, point_grids=[np.zeros((4, 2))])
    with pytest.raises(ValueError, match="output_mode"):
        SamAutomaticMaskGenerator(small_model, output_mode="polygons")
    with pytest.raises(ValueError, match="crop_n_layers"):
        SamAutomaticMaskGenerator(
            small_model, points_per_side=None, point_grids=[np.zeros((4, 2))] * 2
        )
    with pytest.raises(ValueError):
        SamAutomaticMaskGenerator(small_model).generate(np.zeros((10, 10, 5), dtype=np.uint8))


def test_explicit_point_grid_is_used(small_model, dog_image):
    img = np.ascontiguousarray(dog_image[::4, ::4])
    grid = np.array([[0.5, 0.5]])
    anns = SamAutomaticMaskGenerator(
        small_model,
        points_per_side=None,
        point_grids=[grid],
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
    ).generate(img)
    h, w = img.shape[:2]
    assert anns, "thresholds of 0 keep the one point's masks"
    assert all(a["point_coords"] == [[w * 0.5, h * 0.5]] for a in anns)


def test_options_dataclass_matches_the_signature():
    sig = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    for f in dataclasses.fields(AmgOptions):
        assert sig[f.name].default == f.default, f.name
