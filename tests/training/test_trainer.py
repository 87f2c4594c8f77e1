"""The SAM trainer on a tiny model: runs, logs, saves, and freezes what it should."""

from __future__ import annotations

import json

import torch

from mobilesam.build import build_model, build_sam
from mobilesam.training import SamTrainConfig, train_sam
from mobilesam.training.models import SHAPES_STUDENT, SHAPES_TEACHER


def _tiny(trainable: str, out) -> SamTrainConfig:
    return SamTrainConfig(
        out=str(out), steps=3, batch_size=2, prompts_per_image=2, correction_rounds=1,
        warmup=1, eval_every=3, eval_scenes=2, log_every=1, trainable=trainable,
        train_scenes=4,
    )  # fmt: skip


def test_full_training_writes_a_loadable_run(tmp_path):
    torch.manual_seed(0)
    model = build_sam(SHAPES_STUDENT.replace(image_size=64))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = train_sam(model, _tiny("all", tmp_path / "run"), progress=False)
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train)
    assert {r["step"] for r in records if r["kind"] == "eval"} == {0, 3}
    assert (run / "curves.png").stat().st_size > 0
    assert 0.0 <= summary.final_miou <= 1.0
    after = model.state_dict()
    assert not torch.equal(
        before["mask_decoder.iou_token.weight"], after["mask_decoder.iou_token.weight"]
    )
    loaded = build_model(checkpoint=run / "model.safetensors")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, after[k]), k


def test_frozen_decoder_only_moves_the_encoder(tmp_path):
    torch.manual_seed(0)
    model = build_sam(SHAPES_STUDENT.replace(image_size=64))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_sam(model, _tiny("image_encoder", tmp_path / "run"), progress=False)
    after = model.state_dict()
    moved = {k for k in after if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("image_encoder.") for k in moved)


def test_vit_teacher_config_trains_a_step(tmp_path):
    model = build_sam(SHAPES_TEACHER.replace(image_size=64))
    cfg = _tiny("all", tmp_path / "t")
    cfg.steps, cfg.eval_scenes = 1, 0
    assert train_sam(model, cfg, progress=False).steps == 1
