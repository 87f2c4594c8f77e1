"""Training curves of a run folder as a PNG (loss parts and held-out mIoU against step), run
comparisons, and a gallery of one-click masks against ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.shapes import Scene
from ..visualize import save_figure


def plot_training_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw ``metrics.jsonl`` of a SAM training run; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..distill.report import read_metrics

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "curves.png"
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval" and "miou_point_gt" in r]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r["loss"] for r in train], label="total")
    for key in ("focal", "dice", "iou_mse"):
        if train and key in train[0]:
            axes[0].plot(steps, [r.get(key, float("nan")) for r in train], label=key, alpha=0.7)
    axes[0].set_yscale("log")
    axes[0].set_title("training loss (first round)")
    axes[0].legend(fontsize=7)
    axes[1].plot([r["step"] for r in evals], [r["miou_point_gt"] for r in evals], "o-")
    axes[1].set_title("held-out mIoU vs GT (1 point)")
    axes[1].set_ylim(0, 1)
    axes[2].plot(steps, [r["lr"] for r in train], color="tab:orange")
    axes[2].set_title("learning rate")
    for a in axes:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    fig.suptitle(f"SAM training: {run_dir.name}")
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)


def plot_comparison(
    runs: Sequence[tuple[str, list[tuple[float, float]]]],
    out: str | Path,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    """One line per run: ``(label, [(x, y), ...])``; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, pts in runs:
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)


def draw_point_gallery(
    model: Any, scenes: Sequence[Scene], out: str | Path, per_scene: int = 4
) -> Path:
    """One row per scene: the image, then each object's one-click mask against ground truth.

    Yellow: predicted and true; green: missed (true, not predicted); red: spilled (predicted,
    not true); the click is the white dot. The mask is the one the predicted IoU chooses,
    by the same :func:`~mobilesam.training.quality.one_click` that
    :func:`~mobilesam.training.quality.evaluate_quality` scores.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import SamPredictor
    from ..evaluation.prompts import center_point
    from ..inference.masks import mask_iou
    from .quality import one_click

    predictor = SamPredictor(model)
    fig, axes = plt.subplots(
        len(scenes), 1 + per_scene, figsize=(2.2 * (1 + per_scene), 2.3 * len(scenes)),
        squeeze=False,
    )  # fmt: skip
    for row, scene in zip(axes, scenes):
        predictor.set_image(scene.image)
        row[0].imshow(scene.image)
        row[0].set_title(f"scene {scene.seed}", fontsize=8)
        for ax, gt, kind in zip(row[1:], scene.masks, scene.kinds):
            logits, _, best = one_click(predictor, gt)
            pred = logits[best] > model.mask_threshold
            tile = np.zeros((*gt.shape, 3), np.uint8)
            tile[..., 0] = pred * 255
            tile[..., 1] = gt * 255
            ax.imshow(tile)
            ax.plot(*center_point(gt), "o", color="white", markersize=3)
            ax.set_title(f"{kind}: IoU {mask_iou(pred, gt):.2f}", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.suptitle("one click: yellow right, green missed, red spilled", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)
