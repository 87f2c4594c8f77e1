"""The SAM trainer on a tiny model: runs, logs, saves, and freezes what it should."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from mobilesam.build import build_model, build_sam
from mobilesam.checkpoint import CheckpointError, save_checkpoint
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


@pytest.mark.parametrize(
    ("trainable", "prefix"),
    [("image_encoder", "image_encoder"), ("mask_decoder", "mask_decoder"),
     ("iou_head", "mask_decoder.iou_prediction_head")],
)  # fmt: skip
def test_a_trainable_part_is_all_that_moves(tmp_path, trainable, prefix):
    """Frozen decoder: only the encoder moves. Decoder fine-tuning: only the decoder, and
    the student encoder's BatchNorm statistics stay as they were too. IoU head: only the
    scoring MLP, so the masks themselves cannot change."""
    torch.manual_seed(0)
    model = build_sam(SHAPES_STUDENT.replace(image_size=64))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_sam(model, _tiny(trainable, tmp_path / "run"), progress=False)
    after = model.state_dict()
    moved = {k for k in after if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(prefix + ".") for k in moved)


def test_vit_teacher_config_trains_a_step(tmp_path):
    model = build_sam(SHAPES_TEACHER.replace(image_size=64))
    cfg = _tiny("all", tmp_path / "t")
    cfg.steps, cfg.eval_scenes = 1, 0
    assert train_sam(model, cfg, progress=False).steps == 1


def _resumable(out, steps: int = 5) -> SamTrainConfig:
    cfg = _tiny("all", out)
    cfg.steps, cfg.eval_every, cfg.checkpoint_every, cfg.train_scenes = steps, 2, 2, 0
    return cfg


def _fresh_student():
    torch.manual_seed(0)
    return build_sam(SHAPES_STUDENT.replace(image_size=64))


def test_a_run_stopped_and_resumed_ends_with_the_same_weights(tmp_path):
    straight = _fresh_student()
    train_sam(straight, _resumable(tmp_path / "a"), progress=False)

    run = tmp_path / "b"
    # a zero budget stops after one step each time; the third sitting finishes the run
    first = train_sam(_fresh_student(), _resumable(run), progress=False, budget_seconds=0)
    assert (first.steps, first.finished) == (1, False)
    assert not (run / "done.json").exists()
    second = train_sam(
        build_sam(SHAPES_STUDENT.replace(image_size=64)),
        _resumable(run),
        progress=False,
        resume=True,
        budget_seconds=0,
    )
    assert (second.steps, second.finished) == (2, False)
    resumed = build_sam(SHAPES_STUDENT.replace(image_size=64))
    last = train_sam(resumed, _resumable(run), progress=False, resume=True)
    assert (last.steps, last.finished) == (5, True)
    assert (run / "done.json").is_file()
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    steps = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert steps == [1, 2, 3, 4, 5]  # no step logged twice across the sittings
    cpu = [
        json.loads(line)["cpu_seconds"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert all(b > a for a, b in zip(cpu, cpu[1:])), cpu  # carried over, never reset
    assert last.cpu_seconds >= cpu[-1] > 0


def test_resuming_with_another_recipe_is_refused(tmp_path):
    run = tmp_path / "r"
    train_sam(_fresh_student(), _resumable(run), progress=False, budget_seconds=0)
    other = _resumable(run)
    other.lr = 1e-2
    try:
        train_sam(_fresh_student(), other, progress=False, resume=True)
    except ValueError as e:
        assert "train.lr" in str(e)
    else:
        raise AssertionError("a checkpoint of another recipe was resumed")
    # settings that do not touch the optimisation may change
    same = _resumable(run)
    same.threads, same.log_every = 1, 3
    assert train_sam(_fresh_student(), same, progress=False, resume=True).finished


def test_a_checkpoint_older_than_a_setting_resumes_at_its_default(tmp_path):
    from mobilesam.distill.run_state import load_state, save_state

    run = tmp_path / "r"
    train_sam(_fresh_student(), _resumable(run), progress=False, budget_seconds=0)
    path = run / "checkpoint.pt"
    state = load_state(path)
    identity = json.loads(state["identity"])
    del identity["train"]["focal_gamma"]  # as written before the setting existed
    state["identity"] = json.dumps(identity)
    save_state(path, state)
    other = _resumable(run)
    other.focal_gamma = 0.0  # not the default the old run trained with
    with pytest.raises(ValueError, match="train.focal_gamma"):
        train_sam(_fresh_student(), other, progress=False, resume=True)
    assert train_sam(_fresh_student(), _resumable(run), progress=False, resume=True).finished


def test_a_checkpoint_older_than_a_model_setting_resumes_at_its_default(tmp_path):
    from mobilesam.distill.run_state import load_state, save_state

    def teacher(stem: str):
        torch.manual_seed(0)
        enc = replace(SHAPES_TEACHER.encoder, depth=1, global_attn_indexes=(0,), stem=stem)
        return build_sam(SHAPES_TEACHER.replace(image_size=64, encoder=enc))

    run = tmp_path / "r"
    train_sam(teacher("patch"), _resumable(run), progress=False, budget_seconds=0)
    path = run / "checkpoint.pt"
    state = load_state(path)
    identity = json.loads(state["identity"])
    del identity["model"]["encoder"]["stem"]  # as written before the setting existed
    state["identity"] = json.dumps(identity)
    save_state(path, state)
    with pytest.raises(ValueError, match="model.encoder"):
        train_sam(teacher("conv"), _resumable(run), progress=False, resume=True)
    assert train_sam(teacher("patch"), _resumable(run), progress=False, resume=True).finished


def test_rendering_in_worker_processes_trains_the_same_weights(tmp_path):
    """render_workers > 0 (scenes rendered steps ahead in other processes) changes where the
    scenes are made, not which: the weights equal the helper-thread run's, bit for bit."""
    weights = []
    for workers in (0, 2):
        torch.manual_seed(0)
        model = build_sam(SHAPES_STUDENT.replace(image_size=64))
        cfg = _tiny("all", tmp_path / f"w{workers}")
        cfg.eval_scenes, cfg.train_scenes, cfg.render_workers = 0, 0, workers
        train_sam(model, cfg, progress=False)
        weights.append(model.state_dict())
    for k, v in weights[0].items():
        assert torch.equal(v, weights[1][k]), k


def test_upscale_scene_resizes_like_the_predictor_and_blocks_the_masks():
    import numpy as np

    from mobilesam.data.shapes import ShapesConfig, render_scene
    from mobilesam.inference.transforms import ResizeLongestSide
    from mobilesam.training.trainer import upscale_scene

    scene = render_scene(7, ShapesConfig(size=32))
    big = upscale_scene(scene, 64)
    assert big.image.shape == (64, 64, 3) and big.masks.shape == (len(scene), 64, 64)
    assert np.array_equal(big.image, ResizeLongestSide(64).apply_image(scene.image))
    assert np.array_equal(big.masks[:, ::2, ::2], scene.masks)
    assert np.array_equal(big.masks[:, 1::2, 1::2], scene.masks)
    assert big.kinds == scene.kinds and big.seed == scene.seed
    assert upscale_scene(scene, 32) is scene
    with pytest.raises(ValueError, match="whole multiple"):
        upscale_scene(scene, 48)


def test_a_model_larger_than_its_scenes_trains_on_them_upscaled(tmp_path):
    """A 64-px model on 32-px scenes (upscaled for it); a size that is not a whole multiple
    is refused before anything is trained."""
    from mobilesam.data.shapes import ShapesConfig

    torch.manual_seed(0)
    model = build_sam(SHAPES_STUDENT.replace(image_size=64))
    summary = train_sam(model, _tiny("all", tmp_path / "up"), ShapesConfig(size=32), progress=False)
    assert summary.finished and 0.0 <= summary.final_miou <= 1.0
    saved = json.loads((tmp_path / "up" / "config.json").read_text())
    assert saved["model"]["image_size"] == 64
    with pytest.raises(ValueError, match="whole multiple"):
        bad = build_sam(SHAPES_STUDENT.replace(image_size=64))
        train_sam(bad, _tiny("all", tmp_path / "bad"), ShapesConfig(size=48), progress=False)


def test_a_run_starts_from_its_init_weights_and_resumes_only_with_them(tmp_path):
    torch.manual_seed(0)
    start = build_sam(SHAPES_STUDENT.replace(image_size=64))
    save_checkpoint(start, tmp_path / "start.safetensors")
    cfg = replace(_tiny("iou_head", tmp_path / "ft"), init=str(tmp_path / "start.safetensors"))
    torch.manual_seed(1)  # another initialisation: only the init file can make them agree
    model = build_sam(SHAPES_STUDENT.replace(image_size=64))
    train_sam(model, cfg, progress=False)
    frozen = "image_encoder.patch_embed.seq.0.c.weight"
    assert torch.equal(model.state_dict()[frozen], start.state_dict()[frozen])
    other = replace(cfg, init=str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="train.init"):
        train_sam(build_sam(SHAPES_STUDENT.replace(image_size=64)), other, progress=False,
                  resume=True)  # fmt: skip
    # a fresh run from a missing file stops before it touches the folder
    metrics = (tmp_path / "ft" / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match="not found"):
        train_sam(build_sam(SHAPES_STUDENT.replace(image_size=64)), other, progress=False)
    assert (tmp_path / "ft" / "metrics.jsonl").read_text() == metrics
