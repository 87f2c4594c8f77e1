"""Tiny decoupled-distillation demo on the CPU (about a minute): every step of the pipeline.

A small random SAM ViT teacher (2 blocks, 64 wide, 128-pixel input) stands in for ViT-H, since
no pretrained weights are needed to check the machinery. Images: crops of the shared photos and
drawn rectangles. The script caches the teacher's embeddings, distills ``vit_t_micro``, assembles
it with the teacher's prompt encoder and mask decoder, and measures on held-out images:

* embedding MSE and cosine similarity (untrained vs trained student), from the run's metrics;
* mask agreement: IoU between the student's and the teacher's best mask (highest predicted IoU)
  for the same point prompt (3 points per image), untrained vs trained.

    .venv/bin/python scripts/distill_tiny_demo.py --out runs/tiny_demo

Writes ``OUT/summary.json`` and ``OUT/run/curves.png``. The numbers say the pipeline learns and
transfers to masks; they say nothing about a full-scale ViT-H distillation.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "images"


def write_images(folder: Path, count: int, seed: int) -> None:
    from mobilesam.io import read_image, save_png

    rng = np.random.default_rng(seed)
    photos = [read_image(p) for p in sorted(SHARED.glob("*.jpg"))]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h, w = int(rng.integers(60, 160)), int(rng.integers(60, 160))
        if i % 2 == 0 and photos:
            p = photos[i // 2 % len(photos)]
            y, x = int(rng.integers(0, p.shape[0] - h)), int(rng.integers(0, p.shape[1] - w))
            img = np.ascontiguousarray(p[y : y + h, x : x + w])
        else:
            img = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
            for _ in range(4):
                y0, x0 = int(rng.integers(0, h - 10)), int(rng.integers(0, w - 10))
                dy, dx = int(rng.integers(8, 40)), int(rng.integers(8, 40))
                img[y0 : y0 + dy, x0 : x0 + dx] = rng.integers(0, 256, 3)
        save_png(folder / f"img_{i:03d}.png", img)


def mask_agreement(model, teacher, images: list[np.ndarray]) -> float:
    """Mean IoU of ``model``'s best mask against ``teacher``'s for 3 point prompts per image."""
    from mobilesam.inference.masks import mask_iou
    from mobilesam.inference.predictor import SamPredictor

    def best(pred: SamPredictor, point: list[int]) -> np.ndarray:
        masks, scores, _ = pred.predict(np.array([point]), np.array([1]))
        return masks[int(np.argmax(scores))]

    a, b, ious = SamPredictor(model), SamPredictor(teacher), []
    for img in images:
        h, w = img.shape[:2]
        a.set_image(img)
        b.set_image(img)
        for point in ([w // 2, h // 2], [w // 4, h // 4], [3 * w // 4, 2 * h // 3]):
            ious.append(mask_iou(best(a, point), best(b, point)))
    return float(np.mean(ious))


def main() -> None:
    import torch

    from mobilesam.build import SamConfig, ViTConfig, build_model, build_sam
    from mobilesam.checkpoint import load_state_dict_strict, read_state_dict, save_checkpoint
    from mobilesam.distill import DistillConfig, Distiller, build_cache, open_source
    from mobilesam.distill.assemble import assemble  # not the package's same-named module
    from mobilesam.distill.cache import TeacherEmbeddingStore
    from mobilesam.distill.report import plot_curves, summarize
    from mobilesam.distill.sources import load_rgb, split_holdout
    from mobilesam.io import atomic_write_text
    from mobilesam.loading import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/tiny_demo")
    ap.add_argument("--images", type=int, default=36)
    ap.add_argument("--holdout", type=int, default=6)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    write_images(out / "images", args.images, seed=5)

    config = SamConfig(
        "tiny_teacher",
        ViTConfig(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4),
        image_size=128,
        decoder_mlp_dim=256,
    )
    torch.manual_seed(123)
    teacher_file = save_checkpoint(build_model(config), out / "teacher.safetensors")
    teacher = load_model(None, teacher_file)
    build_cache(out / "cache", open_source(out / "images"), teacher, shard_size=16)
    cfg = DistillConfig(
        out=str(out / "run"), cache=str(out / "cache"), student="vit_t_micro", batch_size=4,
        lr=3e-3, warmup=3, holdout=args.holdout, steps=args.steps, eval_every=10, log_every=2,
        checkpoint_every=20, num_workers=0, seed=args.seed,
    )  # fmt: skip
    Distiller(cfg).train()
    plot_curves(out / "run")
    trained = assemble(out / "run", teacher_file, out / "distilled.safetensors")

    torch.manual_seed(args.seed)  # the trainer's initialisation of the student
    untrained = build_sam(trained.config)
    sd = read_state_dict(teacher_file)
    for part in ("prompt_encoder", "mask_decoder"):
        sub = {k[len(part) + 1 :]: v for k, v in sd.items() if k.startswith(part + ".")}
        load_state_dict_strict(getattr(untrained, part), sub)
    cache = TeacherEmbeddingStore(out / "cache")
    held = split_holdout(len(cache), args.holdout, args.seed)[1]
    images = [load_rgb(cache.image_path(i)) for i in held]
    summary = summarize(out / "run")
    summary["mask_iou_vs_teacher"] = {
        "untrained": mask_agreement(untrained, teacher, images),
        "trained": mask_agreement(trained, teacher, images),
        "prompts": 3 * len(images),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
