"""benchmarks/everything.py: mask matching and a tiny end-to-end run."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilesam.inference.amg_options import AmgOptions
from mobilesam.inference.masks import mask_iou

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_everything", REPO / "benchmarks" / "everything.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_matching_is_one_to_one_and_counts_extras(bench):
    rng = np.random.default_rng(0)
    exact = [rng.random((30, 20)) > 0.5 for _ in range(4)]
    near = exact[2].copy()
    near[0, :3] = ~near[0, :3]  # IoU just below 1
    fast = [near, exact[0].copy(), exact[0].copy(), rng.random((30, 20)) > 0.5]
    got = bench.match_masks(exact, fast, 0.9)
    # exact[0] is matched once although two fast masks equal it
    assert (got["exact"], got["fast"], got["matched"], got["extra"]) == (4, 4, 2, 2)
    assert got["min_iou"] == pytest.approx(mask_iou(exact[2], near))
    assert 0.9 <= got["min_iou"] < 1.0
    assert bench.match_masks(exact, [], 0.9) == {
        "exact": 4, "fast": 0, "matched": 0, "extra": 0, "min_iou": None
    }  # fmt: skip


def test_matching_threshold_and_greedy_order(bench):
    """Masks with known IoUs: 0.5 is matched at a 0.5 threshold, not just above it;
    the best pair is taken first even when it is not the first in either list."""
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    half = np.zeros((4, 4), bool)
    half[:1] = True  # 4 of a's pixels: IoU 0.5
    b = np.zeros((4, 4), bool)
    b[3] = True  # disjoint from a and half
    got = bench.match_masks([a], [half], 0.5)
    assert (got["matched"], got["extra"], got["min_iou"]) == (1, 0, 0.5)
    assert bench.match_masks([a], [half], 0.5001)["matched"] == 0
    got = bench.match_masks([a, b], [half, b.copy(), a.copy()], 0.5)
    # a pairs with its copy (IoU 1), not with half; b with its copy; half is extra
    assert (got["matched"], got["extra"], got["min_iou"]) == (2, 1, 1.0)


@pytest.mark.slow
def test_tiny_run_writes_numbers_and_chart(bench, tmp_path, dog_image):
    photo = tmp_path / "small.png"
    Image.fromarray(np.ascontiguousarray(dog_image[::4, ::4])).save(photo)
    out = tmp_path / "r.json"
    code = bench.main(
        [str(photo), "--points-per-side", "2", "--pred-iou-thresh", "0.1",
         "--stability-score-thresh", "0.05", "--json", str(out), "--png", str(tmp_path / "c.png")]
    )  # fmt: skip
    assert code == 0 and (tmp_path / "c.png").stat().st_size > 0
    result = json.loads(out.read_text())
    row = result["rows"][0]
    # the reported ratios are the reported times' ratios
    assert row["speedup"] == pytest.approx(row["exact"]["total"] / row["fast"]["total"])
    assert row["speedup_again"] == pytest.approx(row["exact"]["total"] / row["fast_again"]["total"])
    summary = result["summary"]
    assert summary["speedup"] == pytest.approx(row["speedup"])  # one image: the same ratio
    # on one image the fast path finds the exact path's masks, no more, no fewer
    agreement = row["agreement"]
    assert agreement["exact"] == agreement["fast"] == agreement["matched"] > 0
    assert agreement["extra"] == 0 and agreement["min_iou"] >= 0.9
    assert summary["matched_fraction"] == 1.0 and summary["extra_fraction"] == 0.0
    defaults = AmgOptions()
    assert summary["params"] == {
        "points_per_side": 2,
        "points_per_batch": defaults.points_per_batch,
        "pred_iou_thresh": 0.1,
        "stability_score_thresh": 0.05,
        "box_nms_thresh": defaults.box_nms_thresh,
    }
