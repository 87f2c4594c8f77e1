"""Train the shapes-world teacher (v2 recipe) in sittings, and measure it against the targets.

A long CPU run: each call trains for at most ``--minutes`` and stops with a checkpoint; the
next call with the same ``--out`` resumes exactly where it stopped (same weights as one
uninterrupted run). ``--evaluate`` scores the current weights on held-out scenes that no run
looked at (held-out seeds from 0; the trainer monitors seeds 1,500,000 + i):

    .venv/bin/python scripts/train_teacher.py --out runs/teacher_v2 --minutes 120 --threads 1
    .venv/bin/python scripts/train_teacher.py --out runs/teacher_v2 --evaluate --scenes 100

The evaluation appends a JSON line to ``<out>/quality.jsonl`` (step, minutes so far, point
and box mIoU against ground truth, segment-everything recall at IoU 0.5 with default filters);
``--evaluate --shipped`` scores the teacher shipped in the package the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

TARGETS = {"point_miou": 0.80, "box_miou": 0.88, "everything_recall": 0.80}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/teacher_v2"))
    p.add_argument("--minutes", type=float, default=None, help="stop after this long (resumable)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--render-workers", type=int, default=0,
        help="render scenes this many steps ahead in as many processes (0: one helper thread)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=8000, help="length of the cosine schedule")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompts", type=int, default=4, help="objects prompted per scene")
    p.add_argument("--rounds", type=int, default=1, help="correction clicks after the first")
    p.add_argument("--lr", type=float, default=8e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument(
        "--focal-gamma", type=float, default=2.0,
        help="focal loss exponent (SAM: 2; 0: class-weighted cross-entropy)",
    )  # fmt: skip
    p.add_argument(
        "--focal-alpha", type=float, default=0.25,
        help="focal loss weight of foreground pixels (background: 1 - alpha; negative: none)",
    )  # fmt: skip
    p.add_argument(
        "--stem", choices=("patch", "conv"), default="patch",
        help="the encoder's patch embedding: SAM's strided convolution or a 3x3 convolution stack",
    )  # fmt: skip
    p.add_argument(
        "--image-size", type=int, default=256,
        help="the model's input side: the 256-px scenes are upscaled to it, as the predictor "
        "upscales every image (512: 32x32 tokens, ~4x the compute per step)",
    )  # fmt: skip
    p.add_argument(
        "--init", type=Path, default=None, metavar="WEIGHTS",
        help="start from this model file (e.g. a finished run's model.safetensors)",
    )  # fmt: skip
    p.add_argument(
        "--trainable", choices=("all", "mask_decoder", "iou_head"), default="all",
        help="what trains (iou_head: only the masks' scoring MLP; the masks stay as they are)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evaluate", action="store_true", help="score the current weights, no training")
    p.add_argument(
        "--shipped",
        action="store_true",
        help="with --evaluate: score the teacher shipped in the package instead (for comparison)",
    )
    p.add_argument(
        "--compare", type=Path, nargs="+", default=None, metavar="RUN",
        help="draw these run folders' monitor curves (by step and by training CPU minutes) "
        "into --out as compare_steps.png and compare_cpu.png, no training",
    )  # fmt: skip
    p.add_argument(
        "--gallery", type=int, default=0, metavar="N",
        help="with --evaluate: also draw the first N evaluated scenes' one-click masks "
        "against ground truth into <out>/gallery.png",
    )  # fmt: skip
    p.add_argument("--scenes", type=int, default=100, help="held-out scenes to evaluate on")
    p.add_argument("--start", type=int, default=0, help="first held-out seed (offset)")
    return p.parse_args(argv)


def recipe(args: argparse.Namespace):
    from mobilesam.training import SamTrainConfig

    return SamTrainConfig(
        out=str(args.out), steps=args.steps, batch_size=args.batch,
        prompts_per_image=args.prompts, correction_rounds=args.rounds, lr=args.lr,
        warmup=args.warmup, eval_every=250, eval_scenes=32, checkpoint_every=50,
        log_every=10, threads=args.threads, seed=args.seed, device=args.device,
        render_workers=args.render_workers, focal_gamma=args.focal_gamma,
        focal_alpha=args.focal_alpha, trainable=args.trainable,
        init="" if args.init is None else str(args.init),
    )  # fmt: skip


def train(args: argparse.Namespace) -> int:
    import torch

    from mobilesam.build import build_sam
    from mobilesam.data.shapes import ShapesConfig
    from mobilesam.training import train_sam
    from mobilesam.training.models import SHAPES_TEACHER

    config = SHAPES_TEACHER.replace(
        encoder=replace(SHAPES_TEACHER.encoder, stem=args.stem), image_size=args.image_size
    )
    torch.manual_seed(args.seed)
    model = build_sam(config)
    budget = None if args.minutes is None else 60.0 * args.minutes
    # the world's scenes (256 px) whatever the model's input size
    scenes = ShapesConfig()
    summary = train_sam(model, recipe(args), scenes, resume=True, budget_seconds=budget)
    state = "finished" if summary.finished else "stopped (resume with the same command)"
    print(
        f"{state} at step {summary.steps}/{args.steps}, {summary.seconds / 60:.1f} min in all, "
        f"monitor 1-point mIoU {summary.final_miou:.3f}"
    )
    return 0


def evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from mobilesam.build import build_model
    from mobilesam.checkpoint import read_config
    from mobilesam.data.shapes import iter_scenes
    from mobilesam.distill.run_state import load_state
    from mobilesam.training.quality import evaluate_quality
    from mobilesam.training.trainer import CHECKPOINT_FILE, MODEL_FILE

    weights = args.out / MODEL_FILE
    if not args.shipped and not weights.is_file():
        print(f"no weights at {weights}; train first", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    state = {}
    if args.shipped:
        from mobilesam.training.assets import load_shipped

        model = load_shipped("shapes_teacher").eval()
    else:
        ckpt = args.out / CHECKPOINT_FILE
        state = load_state(ckpt) if ckpt.is_file() else {}
        if state:  # the latest checkpoint's weights, so weights and step agree mid-run
            model = build_model(read_config(weights))
            model.load_state_dict(state["model"])
        else:
            model = build_model(checkpoint=weights)
        model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    q = evaluate_quality(model, iter_scenes("heldout", args.scenes, start=args.start))
    rec = {
        "model": "shipped shapes_teacher" if args.shipped else str(weights),
        "step": state.get("step"),
        "train_minutes": state.get("seconds", 0.0) / 60,
        "train_cpu_minutes": state.get("cpu_seconds", 0.0) / 60,
        "heldout_start": args.start,
        **q.to_dict(),
        "eval_seconds": time.perf_counter() - t0,
    }
    with open(args.out / "quality.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    if args.gallery:
        from mobilesam.data.shapes import render_scene, split_seeds
        from mobilesam.training.report import draw_point_gallery

        scenes = [render_scene(s) for s in split_seeds("heldout", args.gallery, start=args.start)]
        print(f"wrote {draw_point_gallery(model, scenes, args.out / 'gallery.png')}")
    for key, target in TARGETS.items():
        value = rec[key]
        verdict = "n/a" if value is None else ("met" if value >= target else "missed")
        print(f"{key:18s} {value if value is None else round(value, 3)!s:>6}  "
              f"target {target:.2f}  {verdict}")  # fmt: skip
    print(
        f"one point: best of its three masks (oracle) {q.point_oracle_miou:.3f}; by size "
        + ", ".join(f"{k} {v:.3f}" for k, v in q.by_size("point").items())
        + "; by kind "
        + ", ".join(f"{k} {v:.3f}" for k, v in q.by_kind("point").items())
    )
    print(f"masks per scene {rec['masks_per_scene']}, {q.objects} objects in {q.scenes} scenes")
    print(
        f"one-click masks the generator's filters would keep: {q.point_passes_filters:.1%} "
        f"(median predicted IoU {np.median(q.per_object['point_pred_iou']):.3f}, "
        f"median stability {np.median(q.per_object['point_stability']):.3f})"
    )
    return 0


def compare(args: argparse.Namespace) -> int:
    from mobilesam.distill.report import read_metrics
    from mobilesam.training.report import plot_comparison

    curves = []
    for run in args.compare:
        try:
            records = read_metrics(run)
        except FileNotFoundError as e:
            print(e, file=sys.stderr)
            return 2
        evals = [r for r in records if r.get("kind") == "eval" and "miou_point_gt" in r]
        curves.append((run.name, evals))
    args.out.mkdir(parents=True, exist_ok=True)
    title = "teacher monitor: 1-point mIoU vs GT (32 held-out scenes)"
    by_step = [(name, [(r["step"], r["miou_point_gt"]) for r in ev]) for name, ev in curves]
    by_cpu = [  # the step-0 record has no CPU time; runs logged before the counter have none
        (name, [(r["cpu_seconds"] / 60, r["miou_point_gt"]) for r in ev if "cpu_seconds" in r])
        for name, ev in curves
    ]
    for path in (
        plot_comparison(by_step, args.out / "compare_steps.png", "step", "mIoU", title),
        plot_comparison(by_cpu, args.out / "compare_cpu.png", "training CPU min", "mIoU", title),
    ):
        print(f"wrote {path}")
    for name, ev in curves:
        last = ev[-1] if ev else {}
        print(f"{name}: last monitor {last.get('miou_point_gt', float('nan')):.3f} "
              f"at step {last.get('step')}")  # fmt: skip
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compare:
        return compare(args)
    return evaluate(args) if args.evaluate else train(args)


if __name__ == "__main__":
    sys.exit(main())
