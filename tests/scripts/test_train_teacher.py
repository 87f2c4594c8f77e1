"""scripts/train_teacher.py: a sitting stops on its budget, the next resumes, --evaluate scores."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_teacher.py"


def _script():
    spec = importlib.util.spec_from_file_location("train_teacher", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sittings_resume_and_evaluation_is_recorded(tmp_path, capsys):
    tt = _script()
    out = tmp_path / "teacher"
    common = ["--out", str(out), "--steps", "3", "--batch", "1", "--prompts", "1", "--warmup", "1"]
    assert tt.main([*common, "--minutes", "0"]) == 0  # a zero budget: one step, then stop
    assert "stopped" in capsys.readouterr().out
    assert not (out / "done.json").exists()
    assert tt.main(common) == 0
    assert "finished at step 3/3" in capsys.readouterr().out
    assert (out / "done.json").is_file()

    assert tt.main(["--out", str(out), "--evaluate", "--scenes", "1", "--gallery", "1"]) == 0
    printed = capsys.readouterr().out
    assert "oracle" in printed and (out / "gallery.png").stat().st_size > 0
    assert "point_miou" in printed and "target 0.80" in printed
    assert "filters would keep" in printed
    rec = json.loads((out / "quality.jsonl").read_text().splitlines()[-1])
    assert rec["step"] == 3 and rec["scenes"] == 1 and rec["objects"] >= 1
    assert 0.0 <= rec["point_miou"] <= 1.0 and rec["everything_recall"] is not None
    assert 0.0 <= rec["point_passes_filters"] <= 1.0


def test_the_shipped_teacher_is_scored_the_same_way(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert _script().main(["--out", str(out), "--evaluate", "--shipped", "--scenes", "1"]) == 0
    rec = json.loads((out / "quality.jsonl").read_text())
    assert rec["model"] == "shipped shapes_teacher" and rec["step"] is None
    assert 0.0 <= rec["box_miou"] <= 1.0


def test_evaluate_without_weights_is_a_clear_error(tmp_path, capsys):
    assert _script().main(["--out", str(tmp_path / "none"), "--evaluate"]) == 2
    assert "no weights" in capsys.readouterr().err


def test_compare_draws_the_runs_monitor_curves(tmp_path, capsys):
    runs = []
    for name, values in (("a", (0.1, 0.4)), ("b", (0.2, 0.6))):
        run = tmp_path / name
        run.mkdir()
        lines = [{"kind": "eval", "step": 0, "miou_point_gt": 0.0, "seconds": 0.0}]
        lines += [
            {"kind": "eval", "step": 250 * i, "miou_point_gt": v, "cpu_seconds": 60.0 * i}
            for i, v in enumerate(values, 1)
        ]
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        runs.append(str(run))
    out = tmp_path / "cmp"
    assert _script().main(["--compare", *runs, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a: last monitor 0.400 at step 500" in printed
    assert "b: last monitor 0.600 at step 500" in printed
    assert (out / "compare_steps.png").stat().st_size > 0
    assert (out / "compare_cpu.png").stat().st_size > 0
    assert _script().main(["--compare", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no metrics log" in capsys.readouterr().err


def test_a_larger_input_and_a_head_only_run_from_its_weights(tmp_path, capsys):
    """--image-size 512 trains on the world's 256-px scenes upscaled (here from a 256-px
    run's weights) and is evaluated on them through the predictor; --init / --trainable
    iou_head continues from its weights and moves the scoring head alone."""
    from mobilesam.build import build_model
    from mobilesam.checkpoint import read_config

    tt = _script()
    tiny = ["--steps", "1", "--batch", "1", "--prompts", "1", "--warmup", "1"]
    small, big = tmp_path / "small", tmp_path / "big"
    assert tt.main(["--out", str(small), *tiny]) == 0
    # a 512-px run may start from 256-px weights (position tables resized)
    start = ["--init", str(small / "model.safetensors")]
    assert tt.main(["--out", str(big), "--image-size", "512", *start, *tiny]) == 0
    assert read_config(big / "model.safetensors").image_size == 512
    assert tt.main(["--out", str(big), "--evaluate", "--scenes", "1"]) == 0
    rec = json.loads((big / "quality.jsonl").read_text())
    assert rec["objects"] >= 1 and 0.0 <= rec["point_miou"] <= 1.0

    head = tmp_path / "head"
    init = ["--init", str(big / "model.safetensors"), "--trainable", "iou_head"]
    assert tt.main(["--out", str(head), "--image-size", "512", *init, *tiny, "--lr", "0.01"]) == 0
    capsys.readouterr()
    before = build_model(checkpoint=big / "model.safetensors").state_dict()
    after = build_model(checkpoint=head / "model.safetensors").state_dict()
    moved = {k for k in after if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("mask_decoder.iou_prediction_head.") for k in moved)
