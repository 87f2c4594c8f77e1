"""scripts/shapes_world.py: students follow a teacher whose input is larger than the scenes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mobilesam.build import build_sam
from mobilesam.checkpoint import read_config, save_checkpoint
from mobilesam.training.models import SHAPES_TEACHER

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script():
    spec = importlib.util.spec_from_file_location("shapes_world", SCRIPTS / "shapes_world.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_students_of_a_512_px_teacher_are_built_and_trained_at_512(tmp_path):
    torch.manual_seed(0)
    teacher = build_sam(SHAPES_TEACHER.replace(image_size=512)).eval()
    weights = save_checkpoint(teacher, tmp_path / "teacher512.safetensors", teacher.config)
    work = tmp_path / "work"
    argv = ["--out", str(work), "--threads", "1", "--teacher-from", str(weights)]
    argv += ["--student-steps", "2", "--finetune-steps", "1", "--monitor-every", "2"]
    argv += ["--student-scenes", "10", "--heldout", "2", "--monitor-scenes", "2"]
    argv += ["--stages", "scenes", "teacher", "decoupled", "finetune"]
    assert _script().main(argv) == 0

    # the scenes stay 256 px; every student takes the teacher's input and its 32x32 grid
    assert read_config(work / "teacher" / "model.safetensors").image_size == 512
    for stage in ("decoupled", "finetune"):
        assert read_config(work / stage / "model.safetensors").image_size == 512, stage
        assert (work / stage / "done.json").is_file(), stage
    curve = [json.loads(line) for line in (work / "decoupled" / "miou.jsonl").open()]
    assert [r["step"] for r in curve] == [0, 2]
    assert all(0.0 <= r["miou_point_gt"] <= 1.0 for r in curve)
    # the decoder fine-tuning trained on the 256-px scenes upscaled, not on scenes drawn at 512
    state = torch.load(work / "finetune" / "checkpoint.pt", weights_only=False)
    assert json.loads(state["identity"])["scenes"]["size"] == 256


def test_a_teacher_file_without_a_config_is_refused(tmp_path):
    work = tmp_path / "work"
    (work / "teacher").mkdir(parents=True)
    save_file({"w": torch.zeros(1)}, str(work / "teacher" / "model.safetensors"))
    with pytest.raises(SystemExit, match="no model config"):
        _script().teacher_input_size(work)
