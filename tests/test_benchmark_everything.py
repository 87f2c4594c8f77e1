"""benchmarks/everything.py: mask matching and a tiny end-to-end run."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    assert 0.9 <= got["min_iou"] < 1.0
    assert bench.match_masks(exact, [], 0.9)["matched"] == 0


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
    assert row["speedup"] > 0 and row["agreement"]["exact"] == row["agreement"]["matched"]
    assert result["summary"]["params"]["points_per_side"] == 2
