"""Segment everything over a folder: the sequential loop vs the overlapped pipeline, one run.

    python benchmarks/everything_folder.py --json docs/benchmarks/everything_folder/bench.json \\
        --png docs/images/everything_folder.png

Makes N photos (default 20) from ../shared/images/*.jpg by cropping, mirroring and
rescaling (800x600 to 1800x1200, JPEG files in a temporary folder), loads vit_t with
random weights on one encoder backend (``--backend``; default openvino-bf16 where
this CPU runs it, else auto) and runs the folder through each variant in turn with
the same generator settings (fast path, 32x32 grid unless told otherwise), each
with a fresh generator and output folder:

* ``sequential``: read, segment, write one image after another (the old loop);
* ``pipeline``: reader thread 2 images ahead, writer thread (the default);
* ``pipeline-nonice``: the same with helper threads at normal priority;
* ``pipeline-ahead``: the pipeline, the reader also encoding the next image.

Each variant first segments one image outside the timing (lazy set-up); with
``--rounds 2`` the variants run A B B A to cancel drift. Prints seconds, images/s,
images/hour and the ratio to the sequential loop, the CPU (model and flags), torch
threads and the 1-minute load average before and after each pass; checks that every
pass wrote the same files. Also times the encoder on batches of 1, 2 and 4 images
(per image).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VARIANTS = ("sequential", "pipeline", "pipeline-nonice", "pipeline-ahead")


def make_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs cropped / mirrored / rescaled from the shared photos, 800x600 to 1800x1200."""
    from PIL import Image

    from mobilesam.io import read_image

    sources = [read_image(p) for p in sorted((SHARED / "images").glob("*.jpg"))]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 0.95)), int(w * rng.uniform(0.6, 0.95))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = src[y : y + ch, x : x + cw]
        if i % 2:
            crop = crop[:, ::-1]
        t = i / max(1, n - 1)
        long_side = int(round(800 + t * 1000))  # 800 .. 1800
        short = int(round(long_side * 2 / 3)) if i % 3 else int(round(long_side * 3 / 4))
        size = (long_side, short) if cw >= ch else (short, long_side)
        img = Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.Resampling.BILINEAR)
        path = folder / f"photo_{i:02d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def encoder_batches(encoder, predictor, image: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Encoder ms per image on batches of 1, 2 and 4 (min of ``repeats``)."""
    resized = predictor.prepare_image(image)[0]
    out = {}
    encoder.encode([resized])  # warm-up
    for b in (1, 2, 4):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            encoder.encode([resized] * b)
            times.append(time.perf_counter() - t0)
        out[str(b)] = 1000 * min(times) / b
    return out


def default_backend() -> str:
    from mobilesam.backends.registry import get_backend

    return "openvino-bf16" if get_backend("openvino-bf16").check() is None else "auto"


def run(args: argparse.Namespace) -> dict:
    import torch

    from mobilesam.backends.cpu import cpu_signature
    from mobilesam.backends.predictor import Predictor
    from mobilesam.cli.everything import _write_result, output_names
    from mobilesam.inference.amg import SamAutomaticMaskGenerator
    from mobilesam.inference.everything_pipeline import (
        SEQUENTIAL,
        AheadEncoder,
        FolderJob,
        PipelineOptions,
        run_folder,
    )
    from mobilesam.io import read_image

    backend = args.backend or default_backend()
    predictor = Predictor.load("vit_t", backend=backend, random_weights=True)
    model = predictor.model_loader()
    encoder = None if predictor.backend.startswith("torch") else predictor.encoder
    amg = {
        "points_per_side": args.points_per_side,
        "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_score_thresh,
    }
    result: dict = {
        "cpu": cpu_signature(),
        "backend": predictor.backend,
        "torch_threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "generator": {**amg, "fast": True},
        "rounds": args.rounds,
        "variants": {},
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        paths = make_photos(root / "in", args.n)
        result["sizes"] = [list(read_image(p).shape[1::-1]) for p in paths]
        jobs = [FolderJob(p, n) for p, n in zip(paths, output_names(paths))]
        if encoder is not None:
            first_image = read_image(paths[0])
            result["encoder_ms_per_image"] = encoder_batches(encoder, predictor, first_image)
            print("encoder ms/image by batch:", result["encoder_ms_per_image"], flush=True)

        def write(tmp_dir, job, image, anns):
            _write_result(tmp_dir, image, anns, "png", job.path)

        warm = np.ascontiguousarray(read_image(paths[-1])[::-1])  # not one of the photos
        order = [v for r in range(args.rounds) for v in (args.variants[:: -1 if r % 2 else 1])]
        for run_index, name in enumerate(order):
            enc = encoder
            options = {
                "sequential": SEQUENTIAL,
                "pipeline": PipelineOptions(),
                "pipeline-nonice": PipelineOptions(helper_nice=0),
                "pipeline-ahead": PipelineOptions(),
            }[name]
            if name == "pipeline-ahead" and encoder is not None:
                enc = AheadEncoder(encoder, keep=options.prefetch + 2)
            gen = SamAutomaticMaskGenerator(model, fast=True, encoder=enc, **amg)
            prepare = enc.prefetcher(gen.predictor) if isinstance(enc, AheadEncoder) else None
            gen.generate(warm)  # lazy set-up and first-call costs outside the timing
            load0 = os.getloadavg()[0]
            report = run_folder(
                jobs, root / f"{name}_{run_index}", gen.generate, write, prepare=prepare,
                options=options,
            )  # fmt: skip
            row = {
                "seconds": report.seconds,
                "images": len(report.segmented),
                "images_per_s": report.images_per_second,
                "images_per_hour": report.images_per_hour,
                "load_before": load0,
                "load_after": os.getloadavg()[0],
            }
            if isinstance(enc, AheadEncoder):
                row["ahead_hits"] = enc.hits
            result["runs"].append({"variant": name, **row})
            print(name, json.dumps(row), flush=True)
        outs = [root / f"{name}_{i}" for i, name in enumerate(order)]
        masks = sum(len(list((outs[0] / j.name).glob("mask_*.png"))) for j in jobs)
        same = all(
            not filecmp.dircmp(outs[0] / j.name, o / j.name).diff_files
            and sorted(os.listdir(outs[0] / j.name)) == sorted(os.listdir(o / j.name))
            for o in outs[1:]
            for j in jobs
        )
        result["masks_total"] = masks
        result["same_outputs"] = same
    for name in args.variants:  # all rounds of a variant together
        runs = [r for r in result["runs"] if r["variant"] == name]
        seconds = sum(r["seconds"] for r in runs)
        images = sum(r["images"] for r in runs)
        result["variants"][name] = {
            "seconds": seconds / len(runs),
            "images_per_s": images / seconds,
            "images_per_hour": 3600 * images / seconds,
            "load_before": min(r["load_before"] for r in runs),
            "load_after": max(r["load_after"] for r in runs),
        }
    base = result["variants"][args.variants[0]]["images_per_s"]
    for row in result["variants"].values():
        row["ratio"] = row["images_per_s"] / base
    return result


def report(result: dict) -> str:
    lines = [
        f"CPU: {result['cpu']}; {result['cores']} cores, torch threads {result['torch_threads']}; "
        f"encoder backend {result['backend']}; generator {result['generator']}",
        f"{len(result['sizes'])} photos, {result['masks_total']} masks in all; "
        f"same outputs in every variant: {result['same_outputs']}",
        "",
        f"{result['rounds']} round(s); s = mean seconds per pass; load = lowest before / highest "
        "after",
        "",
        "| variant | s | images/s | images/hour | ratio | load 1 min before / after |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result["variants"].items():
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {r['images_per_s']:.4f} | "
            f"{r['images_per_hour']:.0f} | {r['ratio']:.3f}x | "
            f"{r['load_before']:.2f} / {r['load_after']:.2f} |"
        )
    lines += ["", "passes in run order:", ""]
    lines += ["| pass | variant | s | images/hour | load before / after |", "|---|---|---|---|---|"]
    for i, r in enumerate(result["runs"]):
        lines.append(
            f"| {i + 1} | {r['variant']} | {r['seconds']:.1f} | {r['images_per_hour']:.0f} | "
            f"{r['load_before']:.2f} / {r['load_after']:.2f} |"
        )
    if "encoder_ms_per_image" in result:
        lines.append(f"\nencoder ms per image by batch size: {result['encoder_ms_per_image']}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Images per hour of every pass, in run order (drift and other load show as such)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    colours = {v: f"C{i}" for i, v in enumerate(dict.fromkeys(r["variant"] for r in runs))}
    labels = [f"{i + 1}. {r['variant']}" for i, r in enumerate(runs)]
    rates = [r["images_per_hour"] for r in runs]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.5 * len(runs)))
    ax.barh(labels[::-1], rates[::-1], color=[colours[r["variant"]] for r in runs[::-1]])
    for y, r in enumerate(runs[::-1]):
        text = f" {r['images_per_hour']:.0f}/h (load {r['load_before']:.1f}-{r['load_after']:.1f})"
        ax.text(r["images_per_hour"], y, text, va="center", fontsize=8)
    ax.set_xlabel("images per hour, each pass (higher is better)")
    ax.set_title(f"{len(result['sizes'])} photos, {result['backend']}, {result['cpu']}", fontsize=8)
    ax.set_xlim(0, max(rates) * 1.45)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=20, help="number of photos (default 20)")
    p.add_argument("--backend", default=None, help="encoder backend (default openvino-bf16/auto)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument(
        "--rounds", type=int, default=1, help="passes per variant; even rounds run in reverse order"
    )
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--pred-iou-thresh", type=float, default=0.88)
    p.add_argument("--stability-score-thresh", type=float, default=0.95)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--png", type=Path, default=None, help="draw a bar chart here")
    args = p.parse_args(argv)
    result = run(args)
    print(report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if args.png:
        plot(result, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
