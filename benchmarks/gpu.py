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

from gpu_distill import (  # noqa: E402  (beside this script)
    GPU_PLAN,
    QUICK_PLAN,
    Budget,
    SmokePlan,
    distillation,
    fmt_run,
    kill_group,
    one_line,
    photo_dir,
)

from mobilesam.io import atomic_write_text, read_image  # noqa: E402

# "Speed on one GPU: 8 ms encoder + 4 ms decoder (12 ms); SAM ViT-H 452 ms encoder"
PAPER_MS = {"vit_t_encoder": 8.0, "decoder": 4.0, "vit_h_encoder": 452.0}
DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
REPORT = "gpu_report.json"
CHART = "gpu_latency.png"


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
