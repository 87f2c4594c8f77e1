"""Segment everything, strategy by strategy: grid, hierarchical, box refinement; speed and recall.

    nice -n 5 python benchmarks/everything_strategies.py --threads 1 \\
        --json docs/benchmarks/everything_strategies.json \\
        --png docs/images/everything_strategies.png

Strategies: the exact grid, the fast grid, hierarchical (fast path) and hierarchical
with box refinement (fast path). Every image runs all four, in an order rotated
from image to image, so drifting machine load is shared out; each generator is
warmed up on a small image first.

Settings (each states its model and thresholds in the output):

* ``photos``: the real-size vit_t with random weights (seed 0) on the shared photos
  (dog, truck, groceries, picture1), default thresholds: speed only, since random
  weights pass the default filters almost never;
* ``shapes``: the shipped shapes-world teacher on held-out scenes with ground truth,
  default thresholds and the lowered ones (``--low``), where it finds masks at all.

Per strategy: seconds per image (mean), masks per image, points and boxes prompted,
recall of the exact grid's masks (the fast grid's on the photos unless
``--exact-photos``; a grid mask is recalled when a mask of the strategy has IoU >= 0.9
with it; pooled over images) and, with ground truth,
AR@10 / AR@100: recall of the ground-truth instances by the top 10 / 100 masks
ranked by predicted IoU, COCO-style one-to-one matching, averaged over IoU
thresholds 0.50:0.05:0.95 (SAM's object-proposal measure), pooled over scenes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PHOTOS = ("dog.jpg", "truck.jpg", "groceries.jpg", "picture1.jpg")
STRATEGIES: dict[str, dict[str, Any]] = {
    "exact grid": dict(fast=False),
    "fast grid": dict(fast=True),
    "hierarchical": dict(fast=True, strategy="hierarchical"),
    "hierarchical + boxes": dict(fast=True, strategy="hierarchical", refine_boxes=True),
}
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


# ------------------------------------------------------------------------- measures
def iou_matrix(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """len(a) x len(b) mask IoU (pycocotools on RLEs, so many full-size masks stay cheap)."""
    from pycocotools import mask as mask_utils

    if not a or not b:
        return np.zeros((len(a), len(b)))

    def rles(masks: list[np.ndarray]) -> list[dict]:
        return [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]

    return np.asarray(mask_utils.iou(rles(a), rles(b), [0] * len(b))).reshape(len(a), len(b))


def recalled(reference: list[np.ndarray], found: list[np.ndarray], min_iou: float = 0.9) -> int:
    """How many reference masks some found mask overlaps with IoU >= ``min_iou``."""
    if not reference or not found:
        return 0
    return int((iou_matrix(reference, found).max(axis=1) >= min_iou).sum())


def matched_at(ious: np.ndarray, threshold: float) -> int:
    """GT instances matched one-to-one by proposals in rank order (COCO's greedy rule).

    ``ious``: proposals (rows, best rank first) x ground truth (columns).
    """
    free = np.ones(ious.shape[1], dtype=bool)
    for row in ious:
        cand = np.where(free & (row >= threshold), row, -1.0)
        j = int(np.argmax(cand)) if cand.size else -1
        if j >= 0 and cand[j] >= threshold:
            free[j] = False
    return int((~free).sum())


def proposal_hits(anns: list[dict], gt: np.ndarray, k: int) -> np.ndarray:
    """Matched GT count at each IoU threshold of :data:`IOU_THRESHOLDS`, top-``k`` proposals."""
    top = sorted(anns, key=lambda a: -a["predicted_iou"])[:k]
    ious = iou_matrix([a["segmentation"] for a in top], list(gt))
    return np.array([matched_at(ious, t) for t in IOU_THRESHOLDS])


# --------------------------------------------------------------------------- runs
def photos() -> dict[str, np.ndarray]:
    from mobilesam.io import read_image

    return {Path(n).stem: read_image(SHARED / "images" / n) for n in PHOTOS}


def shapes_scenes(count: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    from mobilesam.data.shapes import iter_scenes

    images, gts = {}, {}
    for scene in iter_scenes("heldout", count):
        images[str(scene.seed)] = scene.image
        gts[str(scene.seed)] = scene.masks
    return images, gts


def run_setting(
    model: Any,
    images: dict[str, np.ndarray],
    gts: dict[str, np.ndarray] | None,
    params: dict[str, Any],
    strategies: list[str],
) -> dict[str, Any]:
    """Strategies on all images, interleaved; per-strategy totals and per-image rows.

    The reference of "grid recall" is the exact grid, or the fast grid when the exact
    one is not run (their masks agree up to float rounding; tests/inference/test_amg.py).
    """
    from mobilesam import SamAutomaticMaskGenerator

    gens = {n: SamAutomaticMaskGenerator(model, **params, **STRATEGIES[n]) for n in strategies}
    reference = "exact grid" if "exact grid" in gens else "fast grid"
    warm = next(iter(images.values()))[:64, :64].copy()
    for gen in gens.values():
        gen.generate(warm)
    names = list(gens)
    stats = {
        n: {"seconds": 0.0, "masks": 0, "points": 0, "boxes": 0, "refined": 0, "recalled": 0}
        for n in names
    }
    hits = {
        n: {10: np.zeros(len(IOU_THRESHOLDS)), 100: np.zeros(len(IOU_THRESHOLDS))} for n in names
    }
    n_grid, n_gt, rows = 0, 0, []
    for k, (image_name, img) in enumerate(images.items()):
        order = names[k % len(names) :] + names[: k % len(names)]
        anns: dict[str, list[dict]] = {}
        row: dict[str, Any] = {"image": image_name, "size": list(img.shape[:2]), "order": order}
        for name in order:
            t0 = time.perf_counter()
            anns[name] = gens[name].generate(img)
            row[name] = {"seconds": time.perf_counter() - t0, "masks": len(anns[name])}
            row[name].update(gens[name].counts)
        grid_masks = [a["segmentation"] for a in anns[reference]]
        n_grid += len(grid_masks)
        for name in names:
            s = stats[name]
            s["seconds"] += row[name]["seconds"]
            s["masks"] += row[name]["masks"]
            for key in ("points", "boxes", "refined"):
                s[key] += row[name].get(key, 0)
            rec = recalled(grid_masks, [a["segmentation"] for a in anns[name]])
            s["recalled"] += rec
            row[name]["recalled"] = rec
            if gts is not None:
                for top in (10, 100):
                    hits[name][top] += proposal_hits(anns[name], gts[image_name], top)
        if gts is not None:
            n_gt += len(gts[image_name])
        rows.append(row)
        print(
            f"  {image_name}: "
            + ", ".join(f"{n} {row[n]['seconds']:.2f}s/{row[n]['masks']}" for n in names),
            flush=True,
        )
    n_img = len(images)
    summary = {}
    for name in names:
        s = stats[name]
        summary[name] = {
            "seconds_per_image": s["seconds"] / n_img,
            "masks_per_image": s["masks"] / n_img,
            "points_per_image": s["points"] / n_img,
            "boxes_per_image": s["boxes"] / n_img,
            "refined_per_image": s["refined"] / n_img,
            "grid_recall": s["recalled"] / n_grid if n_grid else None,
            "AR@10": float(hits[name][10].mean() / n_gt) if n_gt else None,
            "AR@100": float(hits[name][100].mean() / n_gt) if n_gt else None,
        }
    fast = summary["fast grid"]["seconds_per_image"]
    for name in names:
        summary[name]["speedup_vs_fast_grid"] = fast / summary[name]["seconds_per_image"]
    return {"images": n_img, "reference": reference, "grid_masks": n_grid, "gt_instances": n_gt,
            "summary": summary, "rows": rows}  # fmt: skip


def print_table(title: str, result: dict) -> None:
    print(f"\n{title}\n")
    print("| strategy | s / image | vs fast grid | masks / image | points / image | "
          "grid recall | AR@10 | AR@100 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    for name, s in result["summary"].items():
        pts = f"{s['points_per_image']:.0f}"
        if s["boxes_per_image"]:
            pts += f" + {s['boxes_per_image']:.1f} boxes ({s['refined_per_image']:.1f} swapped)"
        print(
            f"| {name} | {s['seconds_per_image']:.2f} | {s['speedup_vs_fast_grid']:.2f}x | "
            f"{s['masks_per_image']:.1f} | {pts} | {pct(s['grid_recall'])} | "
            f"{num(s['AR@10'])} | {num(s['AR@100'])} |"
        )
    print(f"\n{result['images']} images, {result['grid_masks']} {result['reference']} masks, "
          f"{result['gt_instances']} ground-truth instances")  # fmt: skip


def draw(results: dict[str, dict], path: Path) -> None:
    """Speed vs recall of the grid's masks (left) and vs AR@100 (right), one line a setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilesam.visualize import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = dict(zip(STRATEGIES, ("s", "o", "^", "D")))
    for ax, key, label in (
        (axes[0], "grid_recall", "recall of the grid's masks (IoU >= 0.9)"),
        (axes[1], "AR@100", "AR@100 of ground truth (shapes world)"),
    ):
        for i, (setting, res) in enumerate(results.items()):
            pts = [(s["seconds_per_image"], s[key], n) for n, s in res["summary"].items()]
            pts = [p for p in pts if p[1] is not None]
            if not pts:
                continue
            colour = f"C{i}"  # one colour per setting in both panels
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", alpha=0.4, color=colour)
            for x, y, n in pts:
                ax.plot(x, y, markers[n], color=colour)
            ax.plot([], [], "-", color=colour, label=setting)
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (log)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    handles = [
        plt.Line2D([], [], marker=m, color="grey", linestyle="", label=n)
        for n, m in markers.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle("Segment everything: strategies, speed vs recall")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=12, help="held-out shapes-world scenes")
    ap.add_argument("--low", type=float, nargs=4, default=[0.3, 0.5, 0.4, 0.5],
                    metavar=("IOU", "STAB", "CONF_IOU", "CONF_STAB"),
                    help="lowered pred_iou / stability / confident thresholds")  # fmt: skip
    ap.add_argument("--settings", nargs="+", default=["photos", "shapes", "shapes-low"],
                    choices=["photos", "photos-low", "shapes", "shapes-low"])  # fmt: skip
    ap.add_argument("--exact-photos", action="store_true",
                    help="the exact grid on the photos too (minutes per photo)")  # fmt: skip
    ap.add_argument("--points-per-side", type=int, default=None, help="default: AmgOptions'")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--teacher", type=Path, default=None,
                    help="shapes settings: this shapes_teacher weights file (e.g. a training "
                         "run's model.safetensors) instead of the shipped one")  # fmt: skip
    ap.add_argument("--png", type=Path, default=None, help="speed-vs-recall plot")
    ap.add_argument("--json", type=Path, default=None, help="raw numbers")
    args = ap.parse_args(argv)

    import torch

    from mobilesam.backends.cpu import cpu_signature
    from mobilesam.inference.amg_options import AmgOptions
    from mobilesam.loading import load_model
    from mobilesam.training.assets import load_shipped

    if args.threads:
        torch.set_num_threads(args.threads)
    d = AmgOptions()
    default = dict(pred_iou_thresh=d.pred_iou_thresh,
                   stability_score_thresh=d.stability_score_thresh,
                   confident_pred_iou_thresh=d.confident_pred_iou_thresh,
                   confident_stability_score_thresh=d.confident_stability_score_thresh)  # fmt: skip
    low = dict(zip(default, args.low))
    if args.points_per_side:
        default["points_per_side"] = low["points_per_side"] = args.points_per_side
    meta = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "cpu": cpu_signature(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_before": os.getloadavg()[0],
        "options": {k: v for k, v in d.kwargs().items()},
    }
    print(f"CPU {meta['cpu']}; torch {meta['torch']}, {meta['threads']} thread(s); "
          f"1-min load {meta['load_before']:.2f}", flush=True)  # fmt: skip
    results: dict[str, dict] = {}
    images, gts = shapes_scenes(args.scenes)
    for setting in args.settings:
        if setting.startswith("photos"):
            torch.manual_seed(0)
            model = load_model("vit_t", None, random_weights=True)
            model_name, imgs, truth = "vit_t random weights (seed 0)", photos(), None
        elif args.teacher is not None:
            model = load_model("shapes_teacher", args.teacher)
            model_name, imgs, truth = f"shapes_teacher from {args.teacher}", images, gts
        else:
            model = load_shipped("shapes_teacher")
            model_name, imgs, truth = "shapes_teacher", images, gts
        params = low if setting.endswith("-low") else default
        title = f"{setting}: {model_name}, " + ", ".join(f"{k}={v}" for k, v in params.items())
        print(f"\n{title}", flush=True)
        strategies = list(STRATEGIES)
        if setting.startswith("photos") and not args.exact_photos:
            strategies.remove("exact grid")
        res = run_setting(model, imgs, truth, params, strategies)
        res.update(model=model_name, params=params)
        results[f"{setting}: {model_name}"] = res
        print_table(title, res)
    meta["load_after"] = os.getloadavg()[0]
    print(f"\n1-min load before {meta['load_before']:.2f}, after {meta['load_after']:.2f}")
    if args.png:
        draw(results, args.png)
        print(f"plot: {args.png}")
    if args.json:
        from mobilesam.io import atomic_write_text

        doc = {"meta": meta, "results": results}
        atomic_write_text(args.json, json.dumps(doc, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
