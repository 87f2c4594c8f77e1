"""``mobilesam bench``: latency, FLOPs and fidelity of the inference backends.

Runs the backend suite (:mod:`mobilesam.bench.suite`) on models loaded by
:func:`mobilesam.loading.load_model`. The segment-everything benchmark is a
script apart: ``benchmarks/everything.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import fail


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench",
        help="benchmark the inference backends (torch, onnxruntime, OpenVINO; fp32/bf16/int8)",
        description="Encoder, decoder (1 and N prompts) and end-to-end latency (min/median of "
        "interleaved runs), parameters, counted FLOPs, achieved FLOP/s vs the measured matmul "
        "peak, speed-ups vs the exact torch path from the same run, and fidelity (max logit "
        "difference, mask IoU). Prints a table, writes bench.json and bench.png.",
    )
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="registered model name; repeat for several (default vit_t)",
    )
    p.add_argument("--checkpoint", default=None, help="weights file (only with one --model)")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="use seeded random weights (speed is valid; fidelity is then between backends on "
        "random weights)",
    )
    p.add_argument("--image-size", type=int, default=None, help="model input size override")
    p.add_argument("--image", default=None, help="photo to use (default: a synthetic picture)")
    p.add_argument("--out", default="bench", help="folder for bench.json / bench.png")
    p.add_argument(
        "--backends",
        default="torch-exact,torch-optimised,ort-fp32,ort-int8",
        help="comma-separated registered backends, or 'all' for every one this machine can "
        "run (torch-exact is the reference for ratios and fidelity)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    p.add_argument("--repeats-many", type=int, default=2, help="timed runs of the N-prompt call")
    p.add_argument("--prompts", type=int, default=64, help="N, prompts in the batched call")
    p.add_argument(
        "--fidelity-grid",
        type=int,
        default=8,
        help="side of the fidelity evaluation's point grid (0: skip the evaluation)",
    )
    p.add_argument(
        "--onnx-dir", default=None, help="reuse an export folder (one model) instead of exporting"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and onnxruntime alike (default: the usable cores)",
    )
    return p


def _load_models(args: argparse.Namespace) -> dict:
    """``{label: model}`` for every ``--model``; raises ``ModelLoadError``."""
    import torch

    from ..loading import ModelLoadError, load_model

    names = args.model or ["vit_t"]
    if args.checkpoint and len(names) > 1:
        raise ModelLoadError("--checkpoint applies to one --model only")
    overrides = {"image_size": args.image_size} if args.image_size else {}
    # --random-weights has always won over --checkpoint here (serve refuses both)
    checkpoint = None if args.random_weights else args.checkpoint
    models = {}
    for name in names:
        if args.random_weights:
            torch.manual_seed(0)  # the same random model in every run
        model = load_model(name, checkpoint, random_weights=args.random_weights, **overrides)
        label = name if not overrides else f"{name}@{args.image_size}"
        models[label] = model
    return models


def run(args: argparse.Namespace) -> int:
    from ..bench.report import format_table
    from ..bench.suite import BenchConfig, run_suite
    from ..export.onnx import synthetic_image
    from ..inference.optimize import set_threads
    from ..io import ImageReadError, read_image
    from ..loading import ModelLoadError

    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if args.repeats < 1 or args.repeats_many < 1 or args.prompts < 1:
        return fail("--repeats, --repeats-many and --prompts must be at least 1")
    try:
        models = _load_models(args)
    except ModelLoadError as e:
        hint = "" if args.random_weights else " (or pass --random-weights)"
        return fail(f"{e}{hint}")
    if args.image:
        try:
            image = read_image(args.image)
        except ImageReadError as e:
            return fail(str(e))
    else:
        image = synthetic_image(768, 1024)
    onnx_dirs = None
    if args.onnx_dir:
        if len(models) > 1:
            return fail("--onnx-dir applies to one --model only")
        if not (Path(args.onnx_dir) / "encoder.onnx").is_file():
            return fail(f"{args.onnx_dir} has no encoder.onnx (run `mobilesam export onnx`)")
        onnx_dirs = {next(iter(models)): Path(args.onnx_dir)}
    cfg = BenchConfig(
        image=image,
        out_dir=args.out,
        backends=backends,
        repeats=args.repeats,
        repeats_many=args.repeats_many,
        many_prompts=args.prompts,
        onnx_dirs=onnx_dirs,
        threads=set_threads(args.threads),
        fidelity_grid=args.fidelity_grid,
    )
    try:
        report = run_suite(models, cfg)
    except ValueError as e:
        return fail(str(e))
    print(format_table(report))
    print(f"\nwrote {Path(args.out) / 'bench.json'} and {Path(args.out) / 'bench.png'}")
    return 0
