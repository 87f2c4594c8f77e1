"""The inference-backend benchmark: latency, FLOPs, efficiency and fidelity per backend.

    from mobilesam.bench.suite import BenchConfig, run_suite
    report = run_suite({"vit_t": model}, BenchConfig(image=rgb, out_dir="bench/"))

For each model and registered backend (by default torch exact, torch
optimised, onnxruntime fp32 and int8; ``"all"``: every backend this machine
can run): encoder latency, decoder latency for 1 prompt and for a batch of N
single-point prompts, ``set_image`` + ``predict`` end to end (min and median of
repeated, interleaved runs), parameter counts, counted FLOPs, achieved FLOP/s
as a fraction of the measured matmul peak, speed ratios against torch-exact
from the same run, and fidelity against torch-exact: max |logit diff| and mask
IoU on the timed prompts, and the masks of the fixed evaluation of
:mod:`mobilesam.backends.fidelity` (``faithful``). Writes ``bench.json`` and
``bench.png``; :func:`format_table` prints it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.masks import mask_iou
from ..io import atomic_write_text
from .backends import BACKENDS, TORCH_PREDICTORS, Backend, registry_backend, torch_backend
from .measure import count_flops, matmul_peak, round_robin

STAGES = ("encoder", "decoder_1", "decoder_many", "end_to_end")


@dataclass
class BenchConfig:
    """What to run. ``onnx_dirs`` maps a model name to an existing export folder."""

    image: np.ndarray
    out_dir: str | Path = "bench"
    backends: tuple[str, ...] = BACKENDS
    repeats: int = 5
    repeats_many: int = 2
    many_prompts: int = 64
    onnx_dirs: dict[str, Path] | None = None
    threads: int | None = None
    progress: bool = True
    fidelity_grid: int = 8  # side of the fidelity evaluation's point grid; 0: skip it


def machine_info() -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from ..backends.cpu import BF16_FLAGS, INT8_FLAGS, cpu_flags

    shown = BF16_FLAGS | INT8_FLAGS | {"avx2", "avx512f", "fma"}
    try:
        from importlib.metadata import version

        openvino = version("openvino")
    except Exception:  # not installed
        openvino = None
    return {
        "cpu": cpu,
        "cpu_flags": sorted(shown & cpu_flags()),
        "openvino": openvino,
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def _prompts(image: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One point near the centre and an n-point grid (AMG-style cell centres), XY."""
    h, w = image.shape[:2]
    side = max(1, int(round(np.sqrt(n))))
    ticks = (np.arange(side) + 0.5) / side
    grid = np.stack(np.meshgrid(ticks * w, ticks * h), -1).reshape(-1, 2)
    grid = np.resize(grid, (n, 2))
    return np.array([w * 0.5, h * 0.45]), grid


def resolve_backends(names: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Names to run (``"all"``: every registered backend) and those skipped here, with why.

    Unknown names raise ``ValueError``; explicitly named backends this machine
    cannot run are skipped too (the reason is reported), so one command runs
    on every machine.
    """
    from ..backends import get_backend, list_backends

    registered = list_backends()
    if "all" in names:
        names = tuple(registered)
    for b in names:
        if b not in registered:
            raise ValueError(f"unknown backend {b!r}; choose from {', '.join(registered)} or all")
    skipped = {b: r for b in names if (r := get_backend(b).check()) is not None}
    return tuple(b for b in names if b not in skipped), skipped


def _make_backends(name: str, model: Any, cfg: BenchConfig, tmp: Path) -> list[Backend]:
    names, _ = resolve_backends(cfg.backends)
    artifacts = tmp / name
    artifacts.mkdir(parents=True, exist_ok=True)
    onnx_dir = (cfg.onnx_dirs or {}).get(name)
    if onnx_dir is not None:  # reuse an export: its graphs (and any quantised copies)
        for f in Path(onnx_dir).glob("*.onnx"):
            shutil.copy(f, artifacts / f.name)
    out = []
    for b in names:
        if b in TORCH_PREDICTORS:
            out.append(torch_backend(model, optimised=b == "torch-optimised"))
        else:
            print(f"[{name}] loading {b} (artifacts in {artifacts})")
            out.append(registry_backend(b, model, artifacts, cfg.threads))
    return out


def _fidelity(ref: dict[str, Any], got: dict[str, Any]) -> dict[str, float]:
    """How far ``got``'s outputs are from the reference backend's (max abs diffs, mask IoU)."""
    one_ref, one = ref["one"], got["one"]
    many_ref, many = ref["many"], got["many"]
    ious_one = np.asarray(mask_iou(one_ref[0], one[0]))
    ious_many = np.asarray(mask_iou(many_ref[0], many[0]))
    return {
        "embedding_max_abs": float(np.abs(ref["embedding"] - got["embedding"]).max()),
        "low_res_logits_max_abs": float(np.abs(one_ref[2] - one[2]).max()),
        "iou_pred_max_abs": float(np.abs(one_ref[1] - one[1]).max()),
        "mask_iou_min_1": float(ious_one.min()),
        "mask_iou_mean_many": float(ious_many.mean()),
        "mask_iou_min_many": float(ious_many.min()),
    }


def bench_model(name: str, model: Any, cfg: BenchConfig, peak_gflops: float) -> dict[str, Any]:
    """All measurements for one model; see the module docstring."""
    from tqdm import tqdm

    from ..build import parameter_table

    image = cfg.image
    point, grid = _prompts(image, cfg.many_prompts)
    with tempfile.TemporaryDirectory() as tmp:
        backends = _make_backends(name, model, cfg, Path(tmp))
        prepared = {b.name: b.prepare(image) for b in backends}
        outputs: dict[str, dict[str, Any]] = {}
        for b in backends:
            b.clear_cache()
            b.set_image(image)
            outputs[b.name] = {
                "embedding": b.encode(prepared[b.name]),
                "one": b.predict_one(point),
                "many": b.predict_many(grid),
            }

        n_calls = len(backends) * (3 * cfg.repeats + cfg.repeats_many)
        bar = tqdm(total=n_calls, desc=f"bench {name}", disable=not cfg.progress, leave=False)

        def stage_calls(stage: str) -> dict[str, Any]:
            calls = {}
            for b in backends:
                if stage == "encoder":
                    calls[b.name] = lambda b=b: b.encode(prepared[b.name])
                elif stage == "decoder_1":
                    calls[b.name] = lambda b=b: b.predict_one(point)
                elif stage == "decoder_many":
                    calls[b.name] = lambda b=b: b.predict_many(grid)
                else:

                    def e2e(b: Backend = b) -> Any:
                        b.clear_cache()
                        b.set_image(image)
                        return b.predict_one(point)

                    calls[b.name] = e2e
            return calls

        timings = {}
        for stage in STAGES:
            reps = cfg.repeats_many if stage == "decoder_many" else cfg.repeats
            # The fidelity pass above already ran every call once; the N-prompt call
            # is too slow on the exact path to run again just to warm up.
            warm = 0 if stage == "decoder_many" else 1
            timings[stage] = round_robin(stage_calls(stage), reps, warm, progress=bar.update)
        bar.close()
        cached = {}
        for b in backends:  # a repeated image: the embedding cache (where a backend has one)
            if b.name == "torch-optimised":
                b.set_image(image)
                cached[b.name] = round_robin(
                    {b.name: lambda b=b: (b.set_image(image), b.predict_one(point))}, cfg.repeats
                )[b.name]

        faithfulness = {}
        if cfg.fidelity_grid and "torch-exact" in prepared:
            from ..backends.fidelity import compare, evaluate

            by_name = {b.name: b for b in backends}
            want = evaluate(by_name["torch-exact"].core, [image], cfg.fidelity_grid)
            for b in backends:
                got = (
                    want
                    if b.name == "torch-exact"
                    else evaluate(b.core, [image], cfg.fidelity_grid)
                )
                faithfulness[b.name] = compare(got, want).to_json()

    exact = "torch-exact" if "torch-exact" in timings["encoder"] else None
    flops = _count_model_flops(model, point, grid, image)
    result: dict[str, Any] = {
        "model": name,
        "image_size": int(model.image_size),
        "input_image": list(image.shape[:2]),
        "many_prompts": cfg.many_prompts,
        "params": parameter_table(model),
        "flops": flops,
        "backends": {},
        "skipped": resolve_backends(cfg.backends)[1],
    }
    for b in backends:
        entry: dict[str, Any] = {
            "description": b.description,
            "fp32": b.fp32,
            "precision": b.precision,
        }
        if b.name in faithfulness:
            entry["faithfulness"] = faithfulness[b.name]
        for stage in STAGES:
            entry[stage] = timings[stage][b.name].to_json()
        if b.name in cached:
            entry["end_to_end_cached"] = cached[b.name].to_json()
        effective = {
            "encoder": flops["encoder"],
            "decoder_1": flops["decoder_1"],
            "decoder_many": flops["decoder_many"],
            "end_to_end": flops["encoder"] + flops["decoder_1"],
        }
        entry["gflops_per_s"] = {
            s: round(effective[s] / timings[s][b.name].median / 1e9, 2) for s in STAGES
        }
        entry["fraction_of_peak"] = {
            s: round(entry["gflops_per_s"][s] / peak_gflops, 3) for s in STAGES
        }
        if exact is not None:
            entry["speedup_vs_exact"] = {
                s: round(timings[s][exact].median / timings[s][b.name].median, 2) for s in STAGES
            }
            entry["speedup_vs_exact_min"] = {
                s: round(timings[s][exact].min / timings[s][b.name].min, 2) for s in STAGES
            }
            entry["fidelity"] = _fidelity(outputs[exact], outputs[b.name])
        result["backends"][b.name] = entry
    return result


def _count_model_flops(
    model: Any, point: np.ndarray, grid: np.ndarray, image: np.ndarray
) -> dict[str, int]:
    """Counted FLOPs of the exact model: encoder, decoder for 1 and for N point prompts."""
    import torch

    s = model.image_size
    pe = model.prompt_encoder
    features = torch.zeros(1, pe.embed_dim, *pe.image_embedding_size)
    scale = s / max(image.shape[:2])

    def decode(points: np.ndarray) -> Any:
        ct = torch.as_tensor(points[:, None, :] * scale, dtype=torch.float)
        lt = torch.ones(ct.shape[:2], dtype=torch.int)
        return model.decode(features, points=(ct, lt))

    return {
        "encoder": count_flops(lambda: model.image_encoder(torch.zeros(1, 3, s, s))),
        "decoder_1": count_flops(lambda: decode(point[None])),
        "decoder_many": count_flops(lambda: decode(grid)),
    }


def run_suite(models: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
    """Benchmark every model; write ``bench.json`` and ``bench.png`` to ``cfg.out_dir``."""
    peak = matmul_peak()
    report = {
        "machine": {**machine_info(), "matmul_peak": peak},
        "config": {
            "repeats": cfg.repeats,
            "repeats_many": cfg.repeats_many,
            "many_prompts": cfg.many_prompts,
            "backends": list(cfg.backends),
            "threads": cfg.threads,
        },
        "models": [bench_model(n, m, cfg, peak["gflops"]) for n, m in models.items()],
    }
    out = Path(cfg.out_dir)
    atomic_write_text(out / "bench.json", json.dumps(report, indent=2) + "\n")
    from .report import plot_report

    plot_report(report, out / "bench.png")
    return report
