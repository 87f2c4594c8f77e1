"""The trainer: learning, schedule, data order, resume (incl. SIGKILL), assembly, online mode."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilesam.distill.cache import TeacherEmbeddingStore
from mobilesam.distill.config import DistillConfig
from mobilesam.distill.data import StepBatchSampler
from mobilesam.distill.teacher import load_teacher
from mobilesam.distill.train import Distiller, lr_factor


def tiny_config(out, cache, **kw) -> DistillConfig:
    base = dict(
        out=str(out), cache=str(cache) if cache else None, student="vit_t_micro",
        batch_size=4, lr=3e-3,
        warmup=3, holdout=6, steps=12, eval_every=0, log_every=2, checkpoint_every=4,
        num_workers=0, seed=1,
    )  # fmt: skip
    base.update(kw)
    return DistillConfig(**base)


def _encoder_state(run: Path) -> dict[str, torch.Tensor]:
    from mobilesam.checkpoint import read_state_dict

    return read_state_dict(run / "student_encoder.safetensors")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_lr_schedule_warms_up_then_decays_to_min():
    total, warm, lr, lo = 100, 10, 1e-3, 1e-5
    f = [lr * lr_factor(s, total, warm, lr, lo) for s in range(total)]
    assert f[0] == pytest.approx(lr / 10) and f[9] == pytest.approx(lr)
    assert all(a < b for a, b in zip(f[:9], f[1:10]))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] == pytest.approx(lo)
    # warm-up is capped at a tenth of a short run
    assert lr_factor(0, 20, 1000, lr, lo) == pytest.approx(0.5)


def test_sampler_splits_each_global_batch_across_ranks_and_micro_batches():
    idx = list(range(100, 150))
    common = dict(batch_size=3, grad_accum=2, world_size=2, seed=4, start_step=0, total_steps=10)
    per_rank = [list(StepBatchSampler(idx, rank=r, **common)) for r in range(2)]
    sps = len(idx) // 12
    for step in range(10):
        chunks = [b for r in range(2) for b in per_rank[r][2 * step : 2 * step + 2]]
        flat = [i for c in chunks for i in c]
        assert len(flat) == len(set(flat)) == 12  # one global batch, no repeats
        if step % sps == sps - 1:  # an epoch uses distinct images
            epoch = [
                i
                for s in range(step - sps + 1, step + 1)
                for r in range(2)
                for c in per_rank[r][2 * s : 2 * s + 2]
                for i in c
            ]
            assert len(set(epoch)) == len(epoch) == sps * 12
    tail = list(StepBatchSampler(idx, rank=1, **{**common, "start_step": 6}))
    assert tail == per_rank[1][12:]


def test_distillation_beats_the_untrained_student_and_assembles(tmp_path, cache_dir,
                                                               teacher_checkpoint):  # fmt: skip
    from mobilesam.build import build_model
    from mobilesam.checkpoint import read_state_dict
    from mobilesam.distill.assemble import assemble
    from mobilesam.distill.report import plot_curves, read_metrics, summarize
    from mobilesam.inference.predictor import SamPredictor

    run = tmp_path / "run"
    cfg = tiny_config(run, cache_dir, steps=40, eval_every=10, checkpoint_every=20)
    result = Distiller(cfg, progress=False).train()
    assert result.finished and result.step == 40
    evals = [r for r in read_metrics(run) if r["kind"] == "eval"]
    untrained, final = evals[0], evals[-1]
    assert untrained["step"] == 0 and final["step"] == 40
    assert final["mse"] < 0.6 * untrained["mse"], (untrained, final)
    assert final["cosine"] > untrained["cosine"] + 0.2
    train = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert len(train) == 20 and all(r["images_per_s"] > 0 and r["lr"] > 0 for r in train)
    s = summarize(run)
    assert s["finished"] and s["heldout_mse"] == final["mse"]
    assert plot_curves(run).stat().st_size > 10_000

    out = tmp_path / "distilled.safetensors"
    assemble(run, teacher_checkpoint, out)
    model = build_model(checkpoint=out)
    teacher_sd = read_state_dict(teacher_checkpoint)
    student_sd = read_state_dict(run / "student_encoder.safetensors")
    for k, v in model.state_dict().items():
        if k.startswith(("prompt_encoder.", "mask_decoder.")):
            assert torch.equal(v, teacher_sd[k]), k
        elif k.startswith("image_encoder."):
            assert torch.equal(v, student_sd[k[len("image_encoder.") :]]), k
    image = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    masks, iou, low = predictor.predict(np.array([[60, 45]]), np.array([1]))
    assert masks.shape == (3, 90, 120) and masks.dtype == bool and iou.shape == (3,)
    emb = predictor.get_image_embedding()
    x = predictor.model.preprocess(
        torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)[None]
    )
    torch.testing.assert_close(emb, result.student.image_encoder.eval()(x))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, cache_dir):
    ref = tmp_path / "ref"
    Distiller(tiny_config(ref, cache_dir), progress=False).train()
    part = tmp_path / "part"
    first = Distiller(tiny_config(part, cache_dir), progress=False).train(stop_after=6)
    assert not first.finished and not (part / "student_encoder.safetensors").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        Distiller(tiny_config(part, cache_dir), progress=False).train()
    with pytest.raises(ValueError, match="lr"):
        Distiller(tiny_config(part, cache_dir, lr=1e-2, resume=True), progress=False).train()
    Distiller(tiny_config(part, cache_dir, resume=True), progress=False).train()
    _assert_same_weights(_encoder_state(ref), _encoder_state(part))
    lines = lambda p: [  # noqa: E731
        {k: v for k, v in r.items() if k != "images_per_s"}
        for r in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())
    ]
    assert lines(ref) == lines(part)  # no duplicated or missing log lines
    again = Distiller(tiny_config(part, cache_dir, resume=True), progress=False).train()
    assert again.finished and lines(ref) == lines(part)  # a finished run is left as it is
    # one Distiller driven in slices (how a caller interleaves its own evaluations)
    chunks = tmp_path / "chunks"
    d = Distiller(tiny_config(chunks, cache_dir, resume=True), progress=False)
    steps = []
    while not (r := d.train(stop_after=5)).finished:
        steps.append(r.step)
    assert steps == [5, 10] and r.step == 12
    _assert_same_weights(_encoder_state(ref), _encoder_state(chunks))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mobilesam", "distill", *args]


def _train_args(out: Path, cache: Path, steps: int) -> list[str]:
    return [
        "train", "--out", str(out), "--cache", str(cache), "--student", "vit_t_micro",
        "--batch-size", "4", "--lr", "3e-3", "--warmup", "3", "--holdout", "6",
        "--steps", str(steps), "--eval-every", "0", "--log-every", "1",
        "--checkpoint-every", "2", "--num-workers", "0", "--seed", "1", "--quiet",
    ]  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path, cache_dir):
    steps = 20
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"  # the same settings, uninterrupted, in this process (one thread too)
    ref_cfg = tiny_config(ref, cache_dir, steps=steps, log_every=1, checkpoint_every=2)
    Distiller(ref_cfg, progress=False).train()
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*_train_args(run, cache_dir, steps)), env=env)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file():
            done = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if x.strip()]
            if done and max(done) >= 9:
                proc.send_signal(signal.SIGKILL)
                killed_at = max(done)
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "run ended before kill"
    assert not (run / "student_encoder.safetensors").exists()
    saved = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < saved < steps
    subprocess.run(
        _cli(*_train_args(run, cache_dir, steps), "--resume"), check=True, env=env, timeout=300
    )
    _assert_same_weights(_encoder_state(ref), _encoder_state(run))


def test_online_mode_runs_the_teacher_and_counts_unreadable_images(
    tmp_path, image_folder, teacher_checkpoint, cache_dir
):
    images = tmp_path / "imgs"
    shutil.copytree(image_folder, images)
    (images / "sub0" / "img_000.png").write_bytes(b"broken")
    cfg = tiny_config(tmp_path / "run", None, images=str(images),
                      teacher_checkpoint=str(teacher_checkpoint), steps=8, holdout=4)  # fmt: skip
    result = Distiller(cfg, progress=False).train()
    assert result.finished
    from mobilesam.distill.report import read_metrics

    train = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert train[-1]["skipped_images"] >= 1  # the broken file was drawn and reported
    # online targets equal the cached ones for the same image
    cache = TeacherEmbeddingStore(cache_dir)
    d = Distiller(cfg.__class__(**{**cfg.to_dict(), "out": str(tmp_path / "r2")}), progress=False)
    sample = d.dataset[1]
    i = [e["key"] for e in cache.entries].index(sample["key"])
    from mobilesam.distill.data import preprocess_batch

    online = d._targets(preprocess_batch(d.student, [sample["image"]]), None)[0]
    np.testing.assert_allclose(online.numpy(), cache.embedding(i).astype(np.float32), atol=2e-2)


def test_bad_settings_are_clear_errors(tmp_path, cache_dir):
    with pytest.raises(ValueError, match="fewer than one global batch"):
        Distiller(tiny_config(tmp_path / "a", cache_dir, batch_size=64), progress=False)
    with pytest.raises(ValueError, match="needs a GPU"):
        Distiller(tiny_config(tmp_path / "b", cache_dir, precision="bf16"), progress=False)
    with pytest.raises(KeyError, match="unknown student"):
        Distiller(tiny_config(tmp_path / "c", cache_dir, student="nope"), progress=False)
    with pytest.raises(ValueError, match="teacher's weights"):
        Distiller(tiny_config(tmp_path / "d", None, images=str(tmp_path)), progress=False)


def test_in_memory_dataset_with_a_teacher_object(tmp_path, teacher_checkpoint):
    """The library path a testbed uses: generated images, no files, a teacher ``Sam``."""
    from mobilesam.distill.data import resize_for_model

    class Squares(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            img = np.zeros((64 + 4 * i, 96, 3), np.uint8)
            img[10 : 20 + 3 * i, 5:40] = (255, 40 * (i % 6), 0)
            return {"image": resize_for_model(img, 128), "target": None, "key": f"sq{i}"}

    teacher = load_teacher(None, teacher_checkpoint)
    cfg = tiny_config(tmp_path / "run", None, steps=3, holdout=2)
    result = Distiller(cfg, dataset=Squares(), teacher=teacher, progress=False).train()
    assert result.finished and set(result.final_eval) == {"mse", "cosine"}
    with pytest.raises(ValueError, match="needs the teacher"):
        Distiller(tiny_config(tmp_path / "r2", None), dataset=Squares(), progress=False)
