"""Two CPU processes under torchrun (gloo): cache slices and DDP training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilesam.checkpoint import read_state_dict
from mobilesam.distill.cache import TeacherEmbeddingStore
from mobilesam.distill.config import DistillConfig
from mobilesam.distill.train import Distiller

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed beside python"),
]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "mobilesam", "distill",
           *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_two_process_cache_equals_the_single_process_cache(
    tmp_path, image_folder, teacher_checkpoint, cache_dir
):
    out = tmp_path / "cache2"
    _torchrun(
        "cache", "--images", str(image_folder), "--out", str(out), "--teacher-checkpoint",
        str(teacher_checkpoint), "--shard-size", "16", "--batch-size", "8",
        "--num-workers", "0", "--quiet",
    )  # fmt: skip
    one, two = TeacherEmbeddingStore(cache_dir), TeacherEmbeddingStore(out)
    assert [e["key"] for e in two.entries] == [e["key"] for e in one.entries]
    for i in range(len(one)):
        np.testing.assert_allclose(
            two.embedding(i).astype(np.float32), one.embedding(i).astype(np.float32), atol=2e-3
        )


def test_ddp_on_two_processes_matches_gradient_accumulation_on_one(tmp_path, cache_dir):
    """2 ranks x batch 2 and 1 process x (2 micro-batches of 2) see the same images per step
    and average the same gradients, so they must reach the same weights (up to rounding)."""
    steps = 6
    ddp = tmp_path / "ddp"
    _torchrun(
        "train", "--out", str(ddp), "--cache", str(cache_dir), "--student", "vit_t_micro",
        "--batch-size", "2", "--grad-accum", "1", "--lr", "3e-3", "--warmup", "2",
        "--holdout", "6", "--steps", str(steps), "--eval-every", "0", "--log-every", "1",
        "--checkpoint-every", "3", "--num-workers", "0", "--seed", "1", "--quiet",
    )  # fmt: skip
    single = tmp_path / "single"
    cfg = DistillConfig(
        out=str(single), cache=str(cache_dir), student="vit_t_micro", batch_size=2,
        grad_accum=2, lr=3e-3, warmup=2, holdout=6, steps=steps, eval_every=0, log_every=1,
        checkpoint_every=3, num_workers=0, seed=1,
    )  # fmt: skip
    Distiller(cfg, progress=False).train()
    a = read_state_dict(ddp / "student_encoder.safetensors")
    b = read_state_dict(single / "student_encoder.safetensors")
    params = [k for k in a if "running_" not in k and "num_batches" not in k]
    for k in params:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)
    info = json.loads((ddp / "run.json").read_text())
    assert info["world_size"] == 2 and info["global_batch"] == 4
    train = [json.loads(x) for x in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in train if r["kind"] == "train"] == list(range(1, steps + 1))
    ckpt = torch.load(ddp / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["step"] == steps
