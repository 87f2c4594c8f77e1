"""benchmarks/gpu.py: the prepared GPU benchmark, run here on the CPU at toy sizes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu.py"


def run_script(out: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out), *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_quick_cpu_run_reports_every_part_and_an_exact_resume(tmp_path):
    proc = run_script(tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    assert report["notes"] == []  # nothing skipped or failed
    assert report["environment"]["torch"] and report["environment"]["cpu"]
    assert report["settings"]["weights"] == "random weights"

    rows = report["latency"]
    timed = [r for r in rows if "median_ms" in r]
    assert {(r["part"], r["precision"]) for r in timed} == {
        (part, p) for part in ("encoder", "decoder") for p in ("fp32", "fp16", "bf16")
    }
    for r in timed:
        assert 0 < r["min_ms"] <= r["median_ms"] and r["runs"] == 1
        assert r["paper_ms"] in (8.0, 4.0) and r["timer"] == "perf_counter"
    # rows that cannot run say why instead of carrying a number
    assert all(r["error"] for r in rows if "median_ms" not in r)
    assert (tmp_path / "gpu_latency.png").stat().st_size > 0

    fid = report["fidelity"]["variants"]
    assert set(fid) == {"fp16", "bf16", "fp32 FastPredictor"}
    assert fid["fp32 FastPredictor"]["embedding_max_abs_diff"] < 1e-3
    assert fid["fp32 FastPredictor"]["best_mask_iou"] > 0.99
    assert 0 < fid["bf16"]["embedding_max_abs_diff"] and fid["bf16"]["best_mask_iou"] > 0.5

    d = report["distill"]
    assert d["uninterrupted"]["returncode"] == 0 and d["resumed"]["returncode"] == 0
    killed = d["killed"]
    assert killed["killed_with_sigkill_after_first_checkpoint"]
    assert 0 < killed["checkpoint_step"] < d["plan"]["steps"]
    assert not killed["student_file_written"]
    c = d["comparison"]
    assert c["resume_agreed"] and c["bit_identical"] and c["losses_equal"]
    assert c["final_loss_a"] == d["uninterrupted"]["last_loss"] > 0
    assert (tmp_path / "distill" / "b_metrics.jsonl").is_file()
    assert "resume" in proc.stdout and "bit-identical: True" in proc.stdout


def test_a_short_budget_skips_parts_with_notes(tmp_path):
    proc = run_script(tmp_path, "--budget-s", "1", timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    assert report["environment"]["device"] == "cpu"
    assert [r for r in report["latency"] if "median_ms" in r] == []
    assert "fidelity" not in report and "distill" not in report
    assert any("skipped" in n for n in report["notes"])
