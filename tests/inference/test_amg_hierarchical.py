"""Hierarchical sampling and box refinement of the automatic mask generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilesam import SamAutomaticMaskGenerator
from mobilesam.inference.amg_hierarchical import HierarchicalSampler
from mobilesam.inference.amg_options import AmgOptions, option_fields, parse_bool
from mobilesam.inference.grids import build_point_grid
from mobilesam.inference.masks import MaskRecords, mask_iou, mask_to_rle

LOW = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def image(dog_image):
    return np.ascontiguousarray(dog_image[::4, ::4])  # 134x200


def _masks(anns):
    return [a["segmentation"] for a in anns]


def _assert_same(exact, fast):
    assert len(exact) == len(fast) > 0
    for e, f in zip(exact, fast):
        assert int((e["segmentation"] != f["segmentation"]).sum()) <= 16
        assert abs(e["predicted_iou"] - f["predicted_iou"]) < 1e-5
        assert abs(e["stability_score"] - f["stability_score"]) < 1e-3
        assert e["point_coords"] == f["point_coords"] and e["crop_box"] == f["crop_box"]


# ------------------------------------------------------------------------- the rule
def _records(masks: list[np.ndarray], iou: list[float], stab: list[float]) -> MaskRecords:
    return MaskRecords(
        rles=mask_to_rle(torch.as_tensor(np.stack(masks))),
        iou_preds=torch.tensor(iou),
        stability_score=torch.tensor(stab),
        boxes=torch.zeros(len(masks), 4, dtype=torch.int64),
    )


@pytest.mark.parametrize("crop_box", [[0, 0, 40, 30], [10, 5, 30, 25]])
def test_covered_points_match_brute_force(crop_box):
    rng = np.random.default_rng(0)
    h, w = 30, 40
    masks = [rng.random((h, w)) < p for p in (0.3, 0.5, 0.2)]
    iou, stab = [0.95, 0.99, 0.5], [0.99, 0.9, 0.99]  # only the first is confident
    sampler = HierarchicalSampler(4, 0.9, 0.95, 0.7)
    records = _records(masks, iou, stab)
    assert sampler.confident(records).tolist() == [True, False, False]
    grid = build_point_grid(7)
    got = sampler.covered_points(records, grid, crop_box, (h, w))
    x0, y0, x1, y1 = crop_box
    for (gx, gy), hit in zip(grid, got):
        x, y = x0 + gx * (x1 - x0), y0 + gy * (y1 - y0)
        assert hit == bool(masks[0][int(y), int(x)])
    assert got.any() and not got.all()


def test_sparse_side():
    assert HierarchicalSampler(4, 0.9, 0.9, 0.7).sparse_side(32) == 8
    assert HierarchicalSampler(4, 0.9, 0.9, 0.7).sparse_side(3) == 1
    with pytest.raises(ValueError, match="sparse_downscale_factor"):
        HierarchicalSampler(0, 0.9, 0.9, 0.7)


def test_dense_pass_skips_exactly_the_points_under_confident_masks(small_model, image):
    """Everything kept is confident (all thresholds 0): the dense pass prompts the points
    outside the masks of an 8-point grid run, computed here by the grid strategy."""
    n, f = 16, 2
    sparse = SamAutomaticMaskGenerator(small_model, points_per_side=n // f, fast=True, **LOW)
    covered = np.zeros(image.shape[:2], bool)
    for a in sparse.generate(image):
        covered |= a["segmentation"]
    h, w = image.shape[:2]
    grid = build_point_grid(n)
    outside = int((~covered[(grid[:, 1] * h).astype(int), (grid[:, 0] * w).astype(int)]).sum())
    assert 0 < outside < n * n, "the test needs some points covered and some not"
    gen = SamAutomaticMaskGenerator(
        small_model,
        points_per_side=n,
        strategy="hierarchical",
        sparse_downscale_factor=f,
        confident_pred_iou_thresh=0.0,
        confident_stability_score_thresh=0.0,
        fast=True,
        **LOW,
    )
    anns = gen.generate(image)
    assert gen.counts["points"] == (n // f) ** 2 + outside
    # every sparse-pass mask survives unless NMS prefers another mask over it
    assert len(anns) > 0


def test_no_confident_mask_means_the_full_grid(small_model, image):
    kw = dict(points_per_side=8, fast=True, **LOW)
    grid = SamAutomaticMaskGenerator(small_model, **kw)
    grid_masks = _masks(grid.generate(image))
    hier = SamAutomaticMaskGenerator(
        small_model, strategy="hierarchical", confident_pred_iou_thresh=2.0, **kw
    )
    anns = hier.generate(image)
    assert grid.counts["points"] == 64 and hier.counts["points"] == 4 + 64
    # the grid's masks are all found (a sparse one can only replace a near duplicate)
    for g in grid_masks:
        assert max(mask_iou(g, m) for m in _masks(anns)) >= 0.7


@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_hierarchical_fast_path_gives_the_exact_masks(small_model, image, crop_n_layers):
    params = dict(
        points_per_side=8,
        strategy="hierarchical",
        sparse_downscale_factor=2,
        pred_iou_thresh=0.05,
        stability_score_thresh=0.0,  # this random model's stability scores are all 0
        confident_pred_iou_thresh=0.1,
        confident_stability_score_thresh=0.0,
        crop_n_layers=crop_n_layers,
    )
    exact_gen = SamAutomaticMaskGenerator(small_model, **params)
    exact = exact_gen.generate(image)
    fast_gen = SamAutomaticMaskGenerator(small_model, fast=True, **params)
    _assert_same(exact, fast_gen.generate(image))
    assert exact_gen.counts["points"] == fast_gen.counts["points"]
    n_crops = 1 + 4 * crop_n_layers  # some dense points are skipped, not all
    assert 16 * n_crops < exact_gen.counts["points"] < (16 + 64) * n_crops


# ---------------------------------------------------------------------- refinement
@pytest.fixture(scope="module")
def teacher_scene():
    """The shipped shapes-world teacher (trained, 256 px) and a held-out scene."""
    from mobilesam.data.shapes import render_scene
    from mobilesam.training.assets import load_shipped

    return load_shipped("shapes_teacher"), render_scene(1_000_002).image


@pytest.mark.parametrize("strategy", ["grid", "hierarchical"])
def test_box_refinement_replaces_only_better_overlapping_masks(teacher_scene, strategy):
    model, scene = teacher_scene
    kw = dict(
        points_per_side=8,
        strategy=strategy,
        sparse_downscale_factor=2,
        pred_iou_thresh=0.2,
        stability_score_thresh=0.2,
        box_nms_thresh=1.0,  # no NMS: one refined record per unrefined one
        confident_pred_iou_thresh=0.4,
        confident_stability_score_thresh=0.4,
    )
    plain = SamAutomaticMaskGenerator(model, **kw).generate(scene)
    gen = SamAutomaticMaskGenerator(model, refine_boxes=True, **kw)
    refined = gen.generate(scene)
    assert gen.counts["boxes"] == len(plain) == len(refined)
    left = list(range(len(plain)))  # unrefined records not yet matched to a refined one
    changed = []
    for r in refined:
        same = [i for i in left if (plain[i]["segmentation"] == r["segmentation"]).all()]
        if same:
            left.remove(same[0])
            assert r["predicted_iou"] == plain[same[0]]["predicted_iou"]
        else:
            changed.append(r)
    unmatched = [plain[i] for i in left]
    assert 0 < len(changed) == len(unmatched) == gen.counts["refined"]
    for r in changed:  # some unrefined mask from its point is worse and overlaps it
        assert r["predicted_iou"] > 0.2 and r["stability_score"] >= 0.2
        assert any(
            p["point_coords"] == r["point_coords"]
            and p["predicted_iou"] < r["predicted_iou"]
            and mask_iou(p["segmentation"], r["segmentation"]) >= 0.5
            for p in unmatched
        )
        ys, xs = np.nonzero(r["segmentation"])
        assert r["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
    fast = SamAutomaticMaskGenerator(model, refine_boxes=True, fast=True, **kw)
    _assert_same(refined, fast.generate(scene))
    assert fast.counts["refined"] == len(changed)


# -------------------------------------------------------------------- options, errors
def test_argument_errors(small_model):
    with pytest.raises(ValueError, match="strategy"):
        SamAutomaticMaskGenerator(small_model, strategy="random")
    with pytest.raises(ValueError, match="points_per_side"):
        SamAutomaticMaskGenerator(
            small_model,
            points_per_side=None,
            point_grids=[np.zeros((4, 2))],
            strategy="hierarchical",
        )
    with pytest.raises(ValueError, match="sparse_downscale_factor"):
        SamAutomaticMaskGenerator(small_model, strategy="hierarchical", sparse_downscale_factor=0)


def test_new_options_are_command_line_flags():
    from mobilesam.cli import build_parser

    parsers = {name: parser for name, parser, _ in option_fields()}
    assert parsers["refine_boxes"] is parse_bool and parse_bool("False") is False
    base = ["everything", "x.jpg", "--out", "o"]
    args = build_parser().parse_args(base)
    assert (args.strategy, args.refine_boxes) == (AmgOptions.strategy, AmgOptions.refine_boxes)
    args = build_parser().parse_args(
        base
        + ["--strategy", "hierarchical", "--refine-boxes", "true", "--sparse-downscale-factor", "2"]
    )
    assert (args.strategy, args.refine_boxes, args.sparse_downscale_factor) == (
        "hierarchical",
        True,
        2,
    )
    assert build_parser().parse_args(base + ["--refine-boxes", "no"]).refine_boxes is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(base + ["--strategy", "everywhere"])


# ------------------------------------------------------------ the benchmark's measures
@pytest.fixture(scope="module")
def bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "everything_strategies.py"
    spec = importlib.util.spec_from_file_location("bench_everything_strategies", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_average_recall_matches_one_to_one(bench):
    a = np.zeros((20, 20), bool)
    a[2:8, 2:8] = True
    b = np.zeros((20, 20), bool)
    b[10:20, 10:20] = True
    b_part = np.zeros((20, 20), bool)
    b_part[10:20, 10:16] = True
    b_part[10:12, 16] = True  # IoU 0.62 with b
    anns = [
        {"segmentation": s, "predicted_iou": q}
        for s, q in ((a, 0.9), (a.copy(), 0.8), (b_part, 0.7))
    ]
    gt = np.stack([a, b])
    hits = bench.proposal_hits(anns, gt, k=100)
    # a is matched once (its duplicate finds a taken); b only up to IoU 0.62
    want = [1 + int(t <= 0.62) for t in bench.IOU_THRESHOLDS]
    assert hits.tolist() == want
    assert bench.proposal_hits(anns, gt, k=1).tolist() == [1] * len(bench.IOU_THRESHOLDS)
    assert bench.recalled([a, b], [b_part, a]) == 1
    assert bench.recalled([a, b], [b_part, a], min_iou=0.6) == 2
