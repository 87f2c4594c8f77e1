"""The distillation smoke run of ``benchmarks/gpu.py``, and the budget both use.

Through ``mobilesam distill train`` in child processes (online teacher,
``--precision auto``): one run uninterrupted, one killed with SIGKILL once its
first checkpoint exists and continued with ``--resume``; their steps/s, peak
GPU memory, final losses and final weights compared. Plus what every part of
the GPU script shares: the wall-clock :class:`Budget`, the photos folder and
one-line error text.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mobilesam.distill.run_state import CHECKPOINT  # noqa: E402
from mobilesam.distill.train import STUDENT_FILE  # noqa: E402
from mobilesam.io import read_image  # noqa: E402


def photo_dir() -> Path:
    """The shared test photos next to the repository, else the repository's examples."""
    shared = REPO.parent / "shared" / "images"
    return shared if shared.is_dir() else REPO / "examples"


class Budget:
    """Wall-clock seconds the whole script may take; parts that would overrun are skipped."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()
        self.notes: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def allows(self, need_s: float, what: str) -> bool:
        """Whether ``need_s`` seconds remain for ``what``; if not, note the skip."""
        if self.left() >= need_s:
            return True
        self.note(f"{what}: skipped, {self.left():.0f} s of the budget left, needs ~{need_s:.0f} s")
        return False

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"note: {text}", flush=True)


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


# ------------------------------------------------------------- distillation
@dataclass(frozen=True)
class SmokePlan:
    """Sizes of the distillation smoke run."""

    teacher: str  # registered name; "" = a 2-block ViT small enough for a CPU
    image_size: int
    student: str
    images: int
    holdout: int
    batch_size: int
    steps: int
    checkpoint_every: int
    log_every: int
    num_workers: int
    need_s: float  # rough seconds the whole part takes


QUICK_PLAN = SmokePlan("", 128, "vit_t_micro", 14, 2, 2, 10, 3, 1, 0, 40.0)
GPU_PLAN = SmokePlan("vit_b", 1024, "vit_t", 72, 8, 8, 60, 20, 5, 6, 120.0)

# Runs the CLI exactly as ``python -m mobilesam`` does, then records the CUDA allocator's peak.
RUNNER = """
import json, os, sys
import torch
from mobilesam.cli import main
code = main(sys.argv[1:])
if torch.cuda.is_available() and torch.cuda.is_initialized():
    peak = {"allocated_mib": torch.cuda.max_memory_allocated() / 2**20,
            "reserved_mib": torch.cuda.max_memory_reserved() / 2**20}
    with open(os.environ["MOBILESAM_GPU_PEAK"], "w") as f:
        json.dump(peak, f)
sys.exit(code)
"""


def make_image_folder(folder: Path, count: int, max_side: int, seed: int) -> int:
    """``count`` JPEG crops (every other one mirrored) of the photos, in two sub-folders."""
    from PIL import Image

    photos = [read_image(p) for p in sorted(photo_dir().glob("*.jpg"))]
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.4, 1.0)), int(w * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = photo[y : y + ch, x : x + cw]
        if i % 2:
            crop = crop[:, ::-1]
        img = Image.fromarray(np.ascontiguousarray(crop))
        img.thumbnail((max_side, max_side))
        path = folder / f"part{i % 2}" / f"crop_{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=90)
    return len(photos)


def save_teacher(plan: SmokePlan, path: Path, seed: int) -> str:
    """A random-weight teacher checkpoint that records its config; returns its description."""
    from mobilesam.build import build_model
    from mobilesam.checkpoint import save_checkpoint
    from mobilesam.config import SamConfig, ViTConfig

    torch.manual_seed(seed)
    if plan.teacher:
        model = build_model(plan.teacher, image_size=plan.image_size)
        what = f"{plan.teacher} at {plan.image_size} px"
    else:
        vit = ViTConfig(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4)
        config = SamConfig("smoke_teacher", vit, image_size=plan.image_size, decoder_mlp_dim=256)
        model = build_model(config)
        what = f"a 2-block 64-wide SAM ViT at {plan.image_size} px"
    save_checkpoint(model, path)
    return f"{what}, random weights"


def train_args(plan: SmokePlan, run: Path, images: Path, teacher: Path, device: str) -> list[str]:
    return [
        "distill", "train", "--out", str(run), "--images", str(images),
        "--teacher", plan.teacher or "vit_b", "--teacher-checkpoint", str(teacher),
        "--student", plan.student, "--steps", str(plan.steps),
        "--batch-size", str(plan.batch_size), "--holdout", str(plan.holdout),
        "--checkpoint-every", str(plan.checkpoint_every), "--log-every", str(plan.log_every),
        "--eval-every", "0", "--precision", "auto", "--num-workers", str(plan.num_workers),
        "--device", device, "--seed", "0", "--quiet",
    ]  # fmt: skip


@dataclass
class Child:
    """One training process: its exit status, wall time and the CUDA peak it recorded."""

    returncode: int | None
    wall_s: float
    peak: dict[str, float] | None
    log: Path
    killed_on_purpose: bool = False
    timed_out: bool = False

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.is_file() else []
        return " | ".join(lines[-3:])

    def failure(self) -> str:
        if self.timed_out:
            return f"stopped at its time limit after {self.wall_s:.0f} s"
        return f"exit {self.returncode} after {self.wall_s:.0f} s: {self.tail()}"[:300]


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_child(
    args: list[str],
    log: Path,
    timeout_s: float,
    kill_when: Callable[[], bool] | None = None,
    one_thread: bool = False,
) -> Child:
    """Run the CLI in a child process (its own process group, output to ``log``).

    ``kill_when`` is polled while it runs; once it returns true, the child and its
    data-loading workers get SIGKILL. Killed on ``timeout_s`` too.
    """
    peak_file = log.with_suffix(".peak.json")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MOBILESAM_GPU_PEAK": str(peak_file)}
    src = str(Path(__import__("mobilesam").__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"  # tiny models on a CPU: one thread is faster
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
        killed = timed_out = False
        while proc.poll() is None:
            if time.perf_counter() - t0 > timeout_s:
                kill_group(proc)
                timed_out = True
                break
            if kill_when is not None and kill_when():
                kill_group(proc)
                killed = True
                break
            time.sleep(0.02)
        proc.wait()
    peak = json.loads(peak_file.read_text()) if peak_file.is_file() else None
    return Child(proc.returncode, time.perf_counter() - t0, peak, log, killed, timed_out)


def checkpoint_step(run: Path) -> int | None:
    """The step of the run's checkpoint, if it has one (written atomically)."""
    from mobilesam.distill.run_state import load_state

    path = run / CHECKPOINT
    if not path.is_file():
        return None
    return int(load_state(path)["step"])


def run_summary(run: Path, child: Child, global_batch: int, after: int = 0) -> dict[str, Any]:
    """What one training process did; its speed from the metrics lines past step ``after``."""
    from mobilesam.distill.report import read_metrics

    records = read_metrics(run) if (run / "metrics.jsonl").is_file() else []
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval" and r.get("final")]
    # the first window holds start-up (CUDA context, first kernels); leave it out when we can
    mine = [r for r in train if r["step"] > after]
    windows = mine[1:] or mine
    rates = [r["images_per_s"] / global_batch for r in windows]
    return {
        "returncode": child.returncode,
        "wall_s": round(child.wall_s, 2),
        "steps_logged": train[-1]["step"] if train else 0,
        "last_loss": train[-1]["loss"] if train else None,
        "steps_per_s": statistics.median(rates) if rates else None,
        "peak_gpu_mib": child.peak,
        "final_eval": {k: evals[-1][k] for k in ("mse", "cosine")} if evals else None,
        "log_tail": child.tail(),
    }


def compare_students(a: Path, b: Path) -> dict[str, Any]:
    from mobilesam.checkpoint import read_state_dict

    sa, sb = read_state_dict(a / STUDENT_FILE), read_state_dict(b / STUDENT_FILE)
    if sa.keys() != sb.keys():
        return {"same_keys": False}
    diffs = [float((sa[k].float() - sb[k].float()).abs().max()) for k in sa if sa[k].numel()]
    return {
        "same_keys": True,
        "bit_identical": all(torch.equal(sa[k], sb[k]) for k in sa),
        "max_abs_weight_diff": max(diffs),
    }


def distillation(plan: SmokePlan, s: Any, budget: Budget, logs: Path) -> dict[str, Any]:
    """Runs (a) and (b) in a temporary folder; their logs and metrics are kept in ``logs``."""
    out: dict[str, Any] = {"plan": asdict(plan)}
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mobilesam-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        images = tmp / "images"
        n_photos = make_image_folder(images, plan.images, max(plan.image_size, 256), s.seed)
        teacher = tmp / "teacher.safetensors"
        out["teacher"] = save_teacher(plan, teacher, s.seed)
        out["images"] = f"{plan.images} crops / mirrored crops of {n_photos} photos"
        out["setup_s"] = round(time.perf_counter() - t0, 2)
        args = functools.partial(
            train_args, plan, images=images, teacher=teacher, device=s.device.type
        )
        out["command"] = "python -m mobilesam " + " ".join(args(tmp / "RUN"))
        print(f"distill: {out['teacher']}; {out['images']}; {out['command']}", flush=True)
        try:
            smoke_runs(plan, args, tmp, s.device.type == "cpu", budget, logs, out)
        finally:
            for name in ("a", "b"):
                for f in ("metrics.jsonl", "run.json"):
                    if (tmp / name / f).is_file():
                        (logs / f"{name}_{f}").write_text((tmp / name / f).read_text())
    return out


def smoke_runs(
    plan: SmokePlan,
    args: Callable[[Path], list[str]],
    tmp: Path,
    one_thread: bool,
    budget: Budget,
    logs: Path,
    out: dict[str, Any],
) -> None:
    """(a) uninterrupted in ``tmp/a``; (b) in ``tmp/b``, killed once its first checkpoint
    exists, then resumed. What they did goes into ``out``."""
    run_a, run_b, batch = tmp / "a", tmp / "b", plan.batch_size
    # (a) may take at most 40% of what is left: (b) takes about as long again
    a = run_child(args(run_a), logs / "a.log", 0.4 * budget.left(), one_thread=one_thread)
    out["uninterrupted"] = run_summary(run_a, a, batch)
    print(f"distill (a) uninterrupted: {fmt_run(out['uninterrupted'])}", flush=True)
    if a.returncode != 0:
        budget.note(f"distill (a) {a.failure()}")
        return
    if not budget.allows(1.5 * a.wall_s + 10, "distill (b) kill and resume"):
        return
    b1 = run_child(args(run_b), logs / "b_killed.log", budget.left() - 10,
                   kill_when=(run_b / CHECKPOINT).is_file, one_thread=one_thread)  # fmt: skip
    killed = b1.killed_on_purpose and b1.returncode == -signal.SIGKILL
    out["killed"] = {
        **run_summary(run_b, b1, batch),
        "killed_with_sigkill_after_first_checkpoint": killed,
        "checkpoint_step": checkpoint_step(run_b),
        "student_file_written": (run_b / STUDENT_FILE).is_file(),
    }
    print(f"distill (b) killed: {fmt_run(out['killed'])}, checkpoint at step "
          f"{out['killed']['checkpoint_step']}", flush=True)  # fmt: skip
    if not killed:
        budget.note(f"distill (b) was not killed after its first checkpoint: {b1.failure()}")
        return
    if (out["killed"]["checkpoint_step"] or 0) >= plan.steps:
        budget.note("distill (b): the first checkpoint was the last step's; the resume has no "
                    "steps left to train (use more --distill-steps)")  # fmt: skip
    b2 = run_child([*args(run_b), "--resume"], logs / "b_resumed.log", budget.left() - 5,
                   one_thread=one_thread)  # fmt: skip
    out["resumed"] = run_summary(run_b, b2, batch, after=out["killed"]["checkpoint_step"] or 0)
    print(f"distill (b) resumed: {fmt_run(out['resumed'])}", flush=True)
    if b2.returncode != 0:
        budget.note(f"distill (b) --resume {b2.failure()}")
        return
    out["comparison"] = compare_runs(out, run_a, run_b)


def compare_runs(out: dict[str, Any], run_a: Path, run_b: Path) -> dict[str, Any]:
    la, lb = out["uninterrupted"]["last_loss"], out["resumed"]["last_loss"]
    cmp = {
        "final_loss_a": la,
        "final_loss_b": lb,
        "losses_equal": la == lb,
        "loss_abs_diff": abs(la - lb) if la is not None and lb is not None else None,
        **compare_students(run_a, run_b),
    }
    cmp["resume_agreed"] = bool(cmp.get("bit_identical"))
    return cmp


def fmt_run(r: dict[str, Any]) -> str:
    rate = f"{r['steps_per_s']:.2f} steps/s" if r["steps_per_s"] else "- steps/s"
    peak = f", peak {r['peak_gpu_mib']['allocated_mib']:.0f} MiB" if r["peak_gpu_mib"] else ""
    loss = f"{r['last_loss']:.6g}" if r["last_loss"] is not None else "-"
    return (
        f"exit {r['returncode']}, {r['wall_s']:.1f} s, {r['steps_logged']} steps logged, "
        f"{rate}{peak}, last loss {loss}"
    )
