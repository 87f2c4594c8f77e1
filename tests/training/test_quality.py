"""evaluate_quality agrees with the trainer's own measurement, and counts recall right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilesam.training.quality import SIZE_BINS, evaluate_quality, found_objects


def test_found_objects_counts_ground_truth_hit_at_the_threshold():
    gt = np.zeros((3, 10, 10), bool)
    gt[0, :5, :5] = True  # 25 px
    gt[1, 5:, 5:] = True  # 25 px
    gt[2, 0, 9] = True  # 1 px, never found
    half = np.zeros((10, 10), bool)
    half[:5, :5] = True
    half[5:, :4] = True  # IoU with gt[0]: 25 / 45 = 0.56
    shifted = np.zeros((10, 10), bool)
    shifted[6:, 6:] = True  # IoU with gt[1]: 16 / 25 = 0.64
    assert found_objects(gt, [half, shifted], 0.5).tolist() == [True, True, False]
    assert found_objects(gt, [half, shifted], 0.6).tolist() == [False, True, False]
    assert found_objects(gt, [], 0.5).tolist() == [False, False, False]


def test_point_quality_matches_the_trainers_monitor():
    """Two implementations of one-click mIoU (predictor API vs batched torch) must agree."""
    from mobilesam.data import render_scene
    from mobilesam.data.shapes import split_seeds
    from mobilesam.training.assets import load_shipped
    from mobilesam.training.trainer import point_miou

    model = load_shipped("shapes_teacher")
    scenes = [render_scene(s) for s in split_seeds("heldout", 4, start=300_000)]
    with torch.inference_mode():
        monitor = point_miou(model, scenes)
        q = evaluate_quality(
            model,
            scenes,
            generator_options={
                "points_per_side": 8,
                "pred_iou_thresh": 0.0,
                "stability_score_thresh": 0.0,
            },
        )
    assert q.scenes == 4 and q.objects == sum(len(s) for s in scenes)
    assert q.point_miou == pytest.approx(monitor, abs=2e-3)
    assert 0.0 <= q.box_miou <= 1.0
    assert q.everything_recall is not None and 0.0 <= q.everything_recall <= 1.0
    assert q.masks_per_scene is not None and q.masks_per_scene > 0
    assert len(q.per_object["everything"]) == q.objects
    by_kind = q.by_kind("point")
    counts = {k: sum(s.kinds.count(k) for s in scenes) for k in by_kind}
    weighted = sum(by_kind[k] * counts[k] for k in by_kind) / q.objects
    assert weighted == pytest.approx(q.point_miou)  # per-kind means split the same objects
    assert set(q.to_dict()["box_miou_by_kind"]) == set(by_kind)
    # the oracle picks the best of the three masks, so it is never below the chosen one
    assert all(o >= p for o, p in zip(q.per_object["point_oracle"], q.per_object["point"]))
    assert q.point_oracle_miou >= q.point_miou
    area = [float(m.mean()) for s in scenes for m in s.masks]
    assert q.per_object["area"] == pytest.approx(area)
    sizes = q.by_size("point")
    values, area = np.asarray(q.per_object["point"]), np.asarray(area)
    expected = {
        name: values[(area >= lo) & (area < hi)].mean()
        for name, lo, hi in SIZE_BINS
        if ((area >= lo) & (area < hi)).any()
    }
    assert sizes == pytest.approx(expected) and len(sizes) >= 2


def test_one_click_filters_are_those_of_the_generator():
    """The one-click masks' predicted IoU and stability (SAM's definition, recomputed here in
    numpy) and the share of objects the generator's filters would keep."""
    from mobilesam import SamPredictor
    from mobilesam.data import render_scene
    from mobilesam.data.shapes import split_seeds
    from mobilesam.evaluation.prompts import center_point
    from mobilesam.training.assets import load_shipped

    model = load_shipped("shapes_teacher")
    scenes = [render_scene(s) for s in split_seeds("heldout", 2, start=300_000)]
    with torch.inference_mode():
        q = evaluate_quality(model, scenes, everything=False)
        keep_all = evaluate_quality(
            model,
            scenes,
            everything=False,
            generator_options={"pred_iou_thresh": -1e9, "stability_score_thresh": 0.0},
        )
    predictor = SamPredictor(model)
    pred, stab = [], []
    for scene in scenes:
        predictor.set_image(scene.image)
        for gt in scene.masks:
            logits, scores, _ = predictor.predict(
                point_coords=center_point(gt)[None], point_labels=np.array([1]), return_logits=True
            )
            best = logits[int(np.argmax(scores))]
            pred.append(float(scores.max()))
            stab.append((best > 1.0).sum() / max((best > -1.0).sum(), 1))
    assert q.per_object["point_pred_iou"] == pytest.approx(pred)
    assert q.per_object["point_stability"] == pytest.approx(stab)
    expected = np.mean((np.array(pred) >= 0.88) & (np.array(stab) >= 0.95))
    assert q.point_passes_filters == pytest.approx(expected)
    assert keep_all.point_passes_filters == 1.0
    assert "point_passes_filters" in q.to_dict()
