"""GPU benchmark, prepared to be run once, unchanged, on a GPU machine.

    python benchmarks/gpu.py                        # on a GPU: about 7 minutes
    python benchmarks/gpu.py --quick --device cpu   # the same code paths at toy sizes

Parts, in the order they run (each skipped with a note when ``--budget-s`` runs short):

1. environment: torch, CUDA and cuDNN versions, the GPU and its capability, the CPU;
2. latency of the torch path, warm-up then median / min over repeated runs (CUDA
   events on a GPU, ``perf_counter`` on the CPU): the vit_t image encoder, as built
   and as the optimised copy ``FastPredictor`` uses, in fp32 and under fp16 / bf16
   autocast; the mask decoder for one point (``Sam.decode`` to low-res logits and to
   full-size masks, and ``FastPredictor``'s decoder); the SAM vit_b / vit_h encoders
   (``--teachers``). Set against the paper's 8 ms + 4 ms and ViT-H's 452 ms;
3. fidelity of fp16 / bf16 against fp32 on a photo: embedding max abs difference
   and IoU of the best mask for one point;
4. distillation smoke run through ``mobilesam distill train`` (online teacher,
   ``--precision auto``; each run a child process calling the CLI's ``main``, as
   ``python -m mobilesam`` does, which then records the CUDA allocator's peak): one
   run uninterrupted, one killed with SIGKILL once its first checkpoint exists and
   continued with ``--resume``; steps/s, peak GPU memory, final losses and final
   weights of the two compared (bit-identical is expected on the CPU; a GPU may
   differ through non-deterministic kernels, and the difference is reported);
5. the vit_t encoder under ``torch.compile`` in a child process, kept only if it
   compiles within ``--compile-budget-s``.

The models have random weights unless ``--checkpoint`` is given: latency does not
depend on the weights, fidelity is then the numerics of random weights. Everything
goes to ``gpu_report.json`` in ``--out`` (rewritten after each part, so a run cut
short keeps what it measured) and the latencies to ``gpu_latency.png``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mobilesam.distill.run_state import CHECKPOINT  # noqa: E402
from mobilesam.distill.train import STUDENT_FILE  # noqa: E402
from mobilesam.io import atomic_write_text, read_image  # noqa: E402

# "Speed on one GPU: 8 ms encoder + 4 ms decoder (12 ms); SAM ViT-H 452 ms encoder"
PAPER_MS = {"vit_t_encoder": 8.0, "decoder": 4.0, "vit_h_encoder": 452.0}
DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
REPORT = "gpu_report.json"
CHART = "gpu_latency.png"


def photo_dir() -> Path:
    """The shared test photos next to the repository, else the repository's examples."""
    shared = REPO.parent / "shared" / "images"
    return shared if shared.is_dir() else REPO / "examples"


# ---------------------------------------------------------------------- budget
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


# ---------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> Any:
    dtype = DTYPES[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def time_fn(
    fn: Callable[[], Any], device: torch.device, warmup: int, runs: int, max_s: float
) -> dict[str, Any]:
    """Milliseconds per call of ``fn``: warm-up calls, then up to ``runs`` timed calls.

    On a GPU each call is bracketed by CUDA events and followed by a synchronize, so
    a call's time is its whole stream time from an idle GPU, launch gaps included.
    Stops early (after at least 3 calls) once ``max_s`` seconds of timed calls passed.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    samples: list[float] = []
    deadline = time.perf_counter() + max_s
    for _ in range(runs):
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= 3 and time.perf_counter() > deadline:
            break
    return {
        "median_ms": statistics.median(samples),
        "min_ms": min(samples),
        "runs": len(samples),
        "timer": "cuda events" if device.type == "cuda" else "perf_counter",
    }


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


@dataclass
class Settings:
    """What one run measures, from the command line (``--quick`` shrinks the sizes)."""

    device: torch.device
    image_size: int
    warmup: int
    runs: int
    row_max_s: float
    teachers: bool
    compile: bool
    checkpoint: str | None
    seed: int


# ------------------------------------------------------------------ environment
def environment(device: torch.device) -> dict[str, Any]:
    import mobilesam
    from mobilesam.backends.cpu import cpu_signature

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mobilesam": mobilesam.__version__,
        "git_commit": git_commit(),
        "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu": cpu_signature(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            bf16_supported=torch.cuda.is_bf16_supported(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
        )
    return env


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


# --------------------------------------------------------------------- models
def load(
    name: str, s: Settings, image_size: int | None = None, checkpoint: str | None = None
) -> Any:
    """A model in eval mode on the device: ``checkpoint``'s weights, else seeded random ones."""
    from mobilesam.loading import load_model

    torch.manual_seed(s.seed)
    size = {"image_size": image_size} if image_size else {}
    if checkpoint:
        return load_model(name, checkpoint, device=s.device, download=False, **size)
    return load_model(name, None, device=s.device, random_weights=True, **size)


@dataclass
class Prompt:
    """One foreground point on a photo, in the photo's frame and the model's input frame."""

    photo: np.ndarray
    point: tuple[float, float]
    input_size: tuple[int, int]
    coords: torch.Tensor  # 1x1x2 XY, input frame
    labels: torch.Tensor  # 1x1


def make_prompt(photo: np.ndarray, point: tuple[float, float], model: Any) -> Prompt:
    from mobilesam.inference.transforms import ResizeLongestSide, get_preprocess_shape

    h, w = photo.shape[:2]
    xy = ResizeLongestSide(model.image_size).apply_coords(np.array([[point]]), (h, w))
    return Prompt(
        photo=photo,
        point=point,
        input_size=get_preprocess_shape(h, w, model.image_size),
        coords=torch.as_tensor(xy, dtype=torch.float32, device=model.device),
        labels=torch.ones((1, 1), dtype=torch.int32, device=model.device),
    )


# -------------------------------------------------------------------- latency
class LatencyTable:
    """Rows of timed calls; a call that fails becomes a row with its error."""

    def __init__(self, s: Settings, budget: Budget) -> None:
        self.s = s
        self.budget = budget
        self.rows: list[dict[str, Any]] = []

    def measure(
        self, part: str, what: str, precision: str, fn: Callable[[], Any], paper: str | None
    ) -> None:
        s = self.s
        row: dict[str, Any] = {"part": part, "what": what, "precision": precision}
        if paper:
            row["paper_ms"] = PAPER_MS[paper]
        if not self.budget.allows(s.row_max_s, f"latency {what} {precision}"):
            return
        if s.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(s.device)
        try:
            with torch.inference_mode(), autocast(s.device, precision):
                row.update(time_fn(fn, s.device, s.warmup, s.runs, s.row_max_s))
        except Exception as e:  # a variant that cannot run is reported, not fatal
            row["error"] = one_line(e)
        if s.device.type == "cuda":
            row["peak_mib"] = round(torch.cuda.max_memory_allocated(s.device) / 2**20, 1)
        self.rows.append(row)
        print(format_row(row), flush=True)


def encoder_rows(table: LatencyTable, model: Any, name: str, precisions: tuple[str, ...]) -> None:
    s = table.s
    x = torch.randn(1, 3, model.image_size, model.image_size, device=s.device)
    shape = "x".join(str(v) for v in x.shape)
    paper = {"vit_t": "vit_t_encoder", "vit_h": "vit_h_encoder"}.get(name)
    what = f"{name} encoder {shape}"
    for p in precisions:
        table.measure("encoder", what, p, lambda: model.image_encoder(x), paper)


def vit_t_rows(table: LatencyTable, prompt: Prompt, model: Any) -> None:
    """vit_t's encoder (as built and optimised) and the three decoder paths, per precision."""
    from mobilesam.inference.core import DecodeRequest
    from mobilesam.inference.fast_predictor import FastTorchDecoder
    from mobilesam.inference.optimize import optimize_model

    s = table.s
    precisions = tuple(DTYPES)
    encoder_rows(table, model, "vit_t", precisions)
    fast = optimize_model(model)
    x = torch.randn(1, 3, model.image_size, model.image_size, device=s.device)
    for p in precisions:
        table.measure(
            "encoder", "vit_t encoder, optimised copy (FastPredictor)", p,
            lambda: fast.image_encoder(x), "vit_t_encoder",
        )  # fmt: skip
    with torch.inference_mode():
        emb = model.image_encoder(x)
    points = (prompt.coords, prompt.labels)
    original = tuple(prompt.photo.shape[:2])
    full = f"Sam.decode, 1 point -> 3 masks {original[0]}x{original[1]}"
    low_res = "Sam.decode, 1 point -> 3 low-res logits"
    decoder = FastTorchDecoder(fast)
    with torch.inference_mode():
        prepared = decoder.prepare(emb)
    request = DecodeRequest(prompt.input_size, original, coords=prompt.coords, labels=prompt.labels)
    for p in precisions:
        table.measure("decoder", low_res, p, lambda: model.decode(emb, points=points), "decoder")
        table.measure(
            "decoder", full, p,
            lambda: model.decode(emb, points=points, input_size=prompt.input_size,
                                 original_size=original),
            "decoder",
        )  # fmt: skip
        table.measure(
            "decoder", f"FastPredictor decoder, 1 point -> 3 masks {original[0]}x{original[1]}",
            p, lambda: decoder.decode_torch(prepared, request), "decoder",
        )  # fmt: skip


def teacher_rows(table: LatencyTable, s: Settings) -> None:
    for name, need_s in (("vit_b", 30.0), ("vit_h", 90.0)):
        if not table.budget.allows(need_s, f"latency of the {name} encoder"):
            continue
        t0 = time.perf_counter()
        try:
            model = load(name, s, image_size=s.image_size)
        except Exception as e:
            table.budget.note(f"{name}: could not be built: {one_line(e)}")
            continue
        print(f"{name}: built with random weights in {time.perf_counter() - t0:.1f} s", flush=True)
        encoder_rows(table, model, name, ("fp16", "fp32"))
        del model
        if s.device.type == "cuda":
            torch.cuda.empty_cache()


def format_row(row: dict[str, Any]) -> str:
    head = f"{row['part']:<8} {row['what']:<56} {row['precision']:<5}"
    if "error" in row:
        return f"{head} not run: {row['error']}"
    text = f"{head} {row['median_ms']:>9.2f} {row['min_ms']:>9.2f} {row['runs']:>5}"
    text += f" {row['peak_mib']:>9.0f}" if "peak_mib" in row else f" {'-':>9}"
    if "paper_ms" in row:
        text += f"   {row['paper_ms']:g} ms ({row['median_ms'] / row['paper_ms']:.2f}x)"
    return text


LATENCY_HEADER = (
    f"{'part':<8} {'what':<56} {'prec':<5} {'median ms':>9} {'min ms':>9} {'runs':>5} "
    f"{'peak MiB':>9}   paper (median / paper)"
)


# -------------------------------------------------------------------- fidelity
def fidelity(model: Any, prompt: Prompt, s: Settings) -> dict[str, Any]:
    """fp16 / bf16 (and FastPredictor in fp32) against the exact fp32 path on one photo.

    Each variant runs ``SamPredictor``'s encoder and decoder on the same photo and
    point; the best mask is the one of the three with the highest predicted IoU.
    """
    from mobilesam.inference.fast_predictor import FastPredictor
    from mobilesam.inference.masks import mask_iou
    from mobilesam.inference.predictor import SamPredictor

    def run(predictor: Any, precision: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), autocast(s.device, precision):
            predictor.set_image(prompt.photo)
            masks, iou, _ = predictor.predict_torch(prompt.coords, prompt.labels)
            emb = predictor.get_image_embedding()
        return emb.float(), masks[0], iou[0].float()

    ref_emb, ref_masks, ref_iou = run(SamPredictor(model), "fp32")
    ref_best = int(ref_iou.argmax())
    out: dict[str, Any] = {
        "photo_hw": list(prompt.photo.shape[:2]),
        "point_xy": list(prompt.point),
        "fp32_best_mask": ref_best,
        "fp32_best_mask_area": int(ref_masks[ref_best].sum()),
        "embedding_max_abs": float(ref_emb.abs().max()),
        "variants": {},
    }
    variants = [("fp16", SamPredictor(model)), ("bf16", SamPredictor(model))]
    variants.append(("fp32 FastPredictor", FastPredictor(model)))
    for label, predictor in variants:
        try:
            emb, masks, iou = run(predictor, label.split()[0])
        except Exception as e:
            out["variants"][label] = {"error": one_line(e)}
            continue
        best = int(iou.argmax())
        out["variants"][label] = {
            "embedding_max_abs_diff": float((emb - ref_emb).abs().max()),
            "nonfinite_embedding_values": int((~torch.isfinite(emb)).sum()),
            "best_mask": best,
            "best_mask_iou": float(mask_iou(masks[best], ref_masks[ref_best])),
            "same_mask_token_iou": float(mask_iou(masks[ref_best], ref_masks[ref_best])),
            "iou_prediction_max_abs_diff": float((iou - ref_iou).abs().max()),
        }
    return out


def format_fidelity(fid: dict[str, Any]) -> list[str]:
    lines = [
        f"photo {fid['photo_hw'][1]}x{fid['photo_hw'][0]}, point {fid['point_xy']}; fp32 best "
        f"mask #{fid['fp32_best_mask']} ({fid['fp32_best_mask_area']} px), "
        f"embedding max |value| {fid['embedding_max_abs']:.3g}"
    ]
    for label, v in fid["variants"].items():
        if "error" in v:
            lines.append(f"  {label:<20} not run: {v['error']}")
            continue
        lines.append(
            f"  {label:<20} embedding max abs diff {v['embedding_max_abs_diff']:.3g} "
            f"(non-finite {v['nonfinite_embedding_values']}); best mask #{v['best_mask']} "
            f"IoU {v['best_mask_iou']:.4f} (same token {v['same_mask_token_iou']:.4f}); "
            f"IoU-prediction diff {v['iou_prediction_max_abs_diff']:.3g}"
        )
    return lines


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


def distillation(plan: SmokePlan, s: Settings, budget: Budget, logs: Path) -> dict[str, Any]:
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


# -------------------------------------------------------------------- compile
def compile_worker(path: Path, s: Settings) -> None:
    """Child process: the optimised vit_t encoder under torch.compile, each precision timed.

    Writes ``path`` after every precision, so a parent that stops it keeps the rest.
    """
    from mobilesam.inference.optimize import OptimizeConfig, optimize_model

    model = load("vit_t", s, image_size=s.image_size, checkpoint=s.checkpoint)
    fast = optimize_model(model, OptimizeConfig(compile=True))
    x = torch.randn(1, 3, model.image_size, model.image_size, device=s.device)
    results: dict[str, Any] = {}
    for p in ("fp16", "bf16", "fp32"):  # each recompiles; the likely fastest first
        t0 = time.perf_counter()
        try:
            with torch.inference_mode(), autocast(s.device, p):
                fast.image_encoder(x)
                sync(s.device)
                first = round(time.perf_counter() - t0, 2)
                timing = time_fn(lambda: fast.image_encoder(x), s.device, s.warmup, s.runs,
                                 s.row_max_s)  # fmt: skip
            results[p] = {**timing, "first_call_s": first}
        except Exception as e:
            results[p] = {"error": one_line(e), "first_call_s": round(time.perf_counter() - t0, 2)}
        atomic_write_text(path, json.dumps(results))


def compiled_rows(table: LatencyTable, argv: list[str], budget_s: float) -> dict[str, Any]:
    """Run :func:`compile_worker` in a child; rows for what it finished within ``budget_s``."""
    with tempfile.TemporaryDirectory(prefix="mobilesam-compile-") as tmp:
        path = Path(tmp) / "compiled.json"
        log = Path(tmp) / "compile.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--compile-worker", str(path)]
        t0 = time.perf_counter()
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
            try:
                proc.wait(timeout=budget_s)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                proc.wait()
        done = json.loads(path.read_text()) if path.is_file() else {}
        tail = " | ".join(log.read_text(errors="replace").splitlines()[-2:])
    info = {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1)}
    if os.environ.get("TORCH_COMPILE_DISABLE", "0") not in ("", "0"):
        table.budget.note("TORCH_COMPILE_DISABLE is set: the torch.compile rows ran uncompiled")
    if proc.returncode != 0:
        why = f"stopped after {budget_s:.0f} s" if proc.returncode == -signal.SIGKILL else tail
        info["note"] = f"torch.compile: {sorted(done) or 'nothing'} finished; {why}"[:300]
        table.budget.note(info["note"])
    for p, r in done.items():
        row = {"part": "encoder", "what": "vit_t encoder, optimised + torch.compile",
               "precision": p, "paper_ms": PAPER_MS["vit_t_encoder"], **r}  # fmt: skip
        table.rows.append(row)
        print(format_row(row), f"(first call {r['first_call_s']} s, compile included)", flush=True)
    return info


# ---------------------------------------------------------------------- report
def plot_latency(rows: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Horizontal bars of the median latencies (log scale), the paper's numbers as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = [r for r in rows if "median_ms" in r]
    if not rows:
        return None
    colors = {"fp32": "#4c72b0", "fp16": "#dd8452", "bf16": "#55a868"}
    labels = [f"{r['what']} [{r['precision']}]" for r in rows]
    fig, ax = plt.subplots(figsize=(12, 0.3 * len(rows) + 2.2))
    y = np.arange(len(rows))
    ax.barh(y, [r["median_ms"] for r in rows], color=[colors[r["precision"]] for r in rows])
    ax.scatter([r["min_ms"] for r in rows], y, color="black", s=8, zorder=3)
    for ms in PAPER_MS.values():
        ax.axvline(ms, color="gray", ls="--", lw=0.8)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.6)
    ax.set_xscale("log")
    ax.set_xlabel("median latency, ms (log scale); dot: min")
    handles: list[Any] = [Patch(color=c, label=p) for p, c in colors.items()]
    paper = ", ".join(f"{k.replace('_encoder', ' encoder')} {ms:g}" for k, ms in PAPER_MS.items())
    handles.append(Line2D([], [], color="gray", ls="--", lw=0.8, label=f"paper (ms): {paper}"))
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def to_json(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become strings ("nan", "inf") instead of NaN literals."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


@contextmanager
def part(report: dict[str, Any], name: str, out_dir: Path, budget: Budget) -> Iterator[None]:
    """Run one part: a crash is recorded in the report, which is saved after every part."""
    print(f"\n== {name} ({budget.elapsed():.0f} s in) ==", flush=True)
    try:
        yield
    except Exception as e:
        budget.note(f"{name}: failed: {one_line(e)}")
    report["notes"] = budget.notes
    report["elapsed_s"] = round(budget.elapsed(), 1)
    atomic_write_text(out_dir / REPORT, json.dumps(to_json(report), indent=1))


# ------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="toy sizes, to check the code paths")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-report",
                    help="report folder (default: $OUT if set, else ./gpu-report)")  # fmt: skip
    ap.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget (seconds)")
    ap.add_argument("--image-size", type=int, default=None, help="encoder input (1024; quick 128)")
    ap.add_argument("--runs", type=int, default=None, help="timed calls per row (50; quick 1)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up calls per row (10; quick 1)")
    ap.add_argument("--teachers", action=argparse.BooleanOptionalAction, default=None,
                    help="time the vit_b / vit_h encoders (default: on a GPU only)")  # fmt: skip
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="time a torch.compile'd encoder (default: on a GPU only)")  # fmt: skip
    ap.add_argument("--compile-budget-s", type=float, default=150.0)
    ap.add_argument("--distill", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--distill-steps", type=int, default=None, help="(60; quick 10)")
    ap.add_argument("--checkpoint", default=None, help="vit_t weights (default: random weights)")
    ap.add_argument("--photo", default=str(photo_dir() / "dog.jpg"))
    ap.add_argument("--point", default="400,260", help="X,Y of the fidelity point on the photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile-worker", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def settings(a: argparse.Namespace) -> Settings:
    """The command line's choices, with the defaults of a GPU run or of ``--quick``."""
    device = torch.device(a.device)
    gpu = device.type == "cuda"
    return Settings(
        device=device,
        image_size=a.image_size or (128 if a.quick else 1024),
        warmup=a.warmup if a.warmup is not None else (1 if a.quick else 10),
        runs=a.runs or (1 if a.quick else 50),
        row_max_s=5.0 if gpu else 30.0,
        teachers=gpu if a.teachers is None else a.teachers,
        compile=gpu if a.compile is None else a.compile,
        checkpoint=a.checkpoint,
        seed=a.seed,
    )


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    s = settings(a)
    if a.compile_worker:
        compile_worker(Path(a.compile_worker), s)
        return 0
    budget = Budget(a.budget_s)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = a.checkpoint or "random weights"
    report: dict[str, Any] = {
        "settings": {**asdict(s), "device": str(s.device), "quick": a.quick, "weights": weights},
        "paper_ms": PAPER_MS,
    }
    print(f"mobilesam GPU benchmark on {s.device}; vit_t: {weights} (teachers: random weights;"
          " latency does not depend on the weights)", flush=True)  # fmt: skip

    with part(report, "environment", out_dir, budget):
        report["environment"] = environment(s.device)
        for k, v in report["environment"].items():
            print(f"  {k}: {v}")

    table = LatencyTable(s, budget)
    report["latency"] = table.rows
    model = prompt = None
    with part(report, "latency", out_dir, budget):
        model = load("vit_t", s, image_size=s.image_size, checkpoint=s.checkpoint)
        x, y = (float(v) for v in a.point.split(","))
        prompt = make_prompt(read_image(a.photo), (x, y), model)
        print(LATENCY_HEADER)
        vit_t_rows(table, prompt, model)
        if s.teachers:
            teacher_rows(table, s)

    if model is not None and prompt is not None:
        with part(report, "fidelity", out_dir, budget):
            if budget.allows(2 * s.row_max_s, "fidelity"):
                report["fidelity"] = fidelity(model, prompt, s)
                print("\n".join(format_fidelity(report["fidelity"])))
    del model
    if s.device.type == "cuda":
        torch.cuda.empty_cache()  # the training processes need the memory, not this one

    if a.distill:
        with part(report, "distillation smoke run", out_dir, budget):
            plan = QUICK_PLAN if a.quick or s.device.type != "cuda" else GPU_PLAN
            if a.distill_steps:
                plan = SmokePlan(**{**asdict(plan), "steps": a.distill_steps})
            if budget.allows(plan.need_s, "distillation smoke run"):
                report["distill"] = distillation(plan, s, budget, out_dir / "distill")

    if s.compile:
        with part(report, "torch.compile", out_dir, budget):
            seconds = min(a.compile_budget_s, budget.left() - 10)
            if budget.allows(60.0, "torch.compile"):
                child_argv = list(argv if argv is not None else sys.argv[1:])
                report["compile"] = compiled_rows(table, child_argv, seconds)

    with part(report, "summary", out_dir, budget):
        print_summary(report)
        title = f"mobilesam torch path on {s.device}; vit_t: {weights}"
        chart = plot_latency(table.rows, out_dir / CHART, title)
        print(f"report: {out_dir / REPORT}; chart: {chart}")
    return 0


def print_summary(report: dict[str, Any]) -> None:
    print(LATENCY_HEADER)
    for row in report["latency"]:
        print(format_row(row))
    if "fidelity" in report:
        print("\n".join(format_fidelity(report["fidelity"])))
    d = report.get("distill", {})
    for key in ("uninterrupted", "killed", "resumed"):
        if key in d:
            print(f"distill {key}: {fmt_run(d[key])}")
    if "comparison" in d:
        c = d["comparison"]
        print(
            f"distill: final loss uninterrupted {c['final_loss_a']!r}, killed+resumed "
            f"{c['final_loss_b']!r} (equal: {c['losses_equal']}); weights bit-identical: "
            f"{c.get('bit_identical')} (max abs diff {c.get('max_abs_weight_diff')})"
        )
    for note in report.get("notes", []):
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(main())
