"""scripts/shapes_seeds.py: equal-compute reading of curves, seed statistics and the verdict."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _module(name: str):
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


def _eval(point_gt: float, point_t: float) -> dict:
    prot = {
        "point": {"objects": 10, "a_vs_gt": point_gt, "a_vs_b": point_t},
        "box": {"objects": 10, "a_vs_gt": point_gt + 0.1, "a_vs_b": point_t + 0.1},
        "two_points@100": {"objects": 10, "a_vs_gt": 0.5, "a_vs_b": 0.5},
    }
    params = {"image_encoder_forward": 4.5e5, "total_forward": 1.2e6}
    return {
        "eval": {"protocols": prot},
        "params": params,
        "latency": {"encoder_ms": 20.0, "decoder_ms": 5.0},
    }


def _record(shift: float) -> dict:
    """A seed: decoupled cheap per step, the coupled students dearer; ``shift`` moves scores."""
    models = {
        "teacher": _eval(0.7, 1.0),
        "decoupled": _eval(0.5 + shift, 0.6 + shift),
        "finetune": _eval(0.52 + shift, 0.6 + shift),
        "coupled_a": _eval(0.4 + shift, 0.45 + shift),
        "coupled_b": _eval(0.55 + shift, 0.58 + shift),
    }
    curves = {  # (step, cpu seconds, monitor mIoU)
        "decoupled": [(0, 30.0, 0.1), (50, 60.0, 0.3), (100, 90.0, 0.5 + shift)],
        "finetune": [(100, 90.0, 0.5), (120, 100.0, 0.52 + shift)],
        "coupled_a": [(0, 0.0, 0.0), (50, 80.0, 0.2 + shift), (100, 160.0, 0.4)],
        "coupled_b": [(0, 0.0, 0.1), (50, 70.0, 0.35 + shift), (100, 140.0, 0.55)],
    }
    return {"results": {"models": models}, "curves": curves}


def test_at_budget_takes_the_last_point_within_the_budget():
    seeds = _module("shapes_seeds")
    pts = [(0, 0.0, 0.1), (50, 80.0, 0.2), (100, 160.0, 0.4)]
    assert seeds.at_budget(pts, 90.0) == (0.2, 50)
    assert seeds.at_budget(pts, 160.0) == (0.4, 100)
    assert seeds.at_budget([(10, 5.0, 0.3)], 1.0) is None


def test_summary_and_answer_follow_the_numbers(tmp_path):
    seeds = _module("shapes_seeds")
    docs = _module("shapes_seeds_docs")
    records = {s: _record(0.01 * s) for s in (0, 1, 2)}
    summary = seeds.summarise(records)
    # equal compute: the budget is the decoupled student's last CPU time (cache included)
    assert summary["equal_compute"][1]["budget_cpu_s"] == 90.0
    assert summary["equal_compute"][1]["coupled_a"] == {"miou": pytest.approx(0.21), "step": 50}
    assert summary["equal_compute"][1]["finetune"] == {"miou": 0.5, "step": 100}
    assert summary["equal_steps"]["coupled_b"]["point_gt"] == pytest.approx([0.55, 0.56, 0.57])
    summary["settings"] = {
        "teacher": "t.safetensors", "out": "runs/x", "seeds": [0, 1, 2], "parallel": 2,
        "student_steps": 100, "finetune_steps": 20, "heldout": 5, "machine": "cpu",
    }  # fmt: skip
    text = docs.render(summary, records, seeds.LABELS)
    # decoupled beats coupled (a) by 0.15 vs teacher in every seed; coupled (b) is ahead of
    # decoupled vs GT by 0.05 in every seed; at equal compute decoupled leads both
    assert "one point vs teacher: decoupled - coupled a = +0.150" in text
    gt_b = (
        "one point vs GT: decoupled - coupled b = -0.050 ± 0.000 (decoupled ahead in 0 of 3 seeds)"
    )
    assert f"{gt_b}: **coupled b better**" in text
    at_cost = "monitor one point vs GT: decoupled - coupled a = +0.300 ± 0.000"
    assert f"{at_cost} (decoupled ahead in 3 of 3 seeds): **decoupled better**" in text
    assert "| 0.510 ± 0.010 |" in text  # decoupled's 1 pt vs GT over the seeds
    assert "| teacher | 0.45M | 1.20M | 20.0 | 5.0 |" in text
    # at the fine-tuned student's cost (100 CPU s) coupled (b) is at its step-50 point
    assert summary["equal_compute"][2]["at_finetune"]["coupled_b"]["step"] == 50
    assert (
        "fine-tuned student's cost, monitor one point vs GT: fine-tuned - coupled b = +0.170"
        in text
    )
    plot = seeds.plot_curves(records, tmp_path / "curves.png")
    assert plot.stat().st_size > 0
