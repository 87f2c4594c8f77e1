"""Pictures of results: masks and prompts drawn over the photo; charts saved to files."""

from __future__ import annotations

import colorsys
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .io import atomic_path


def palette(n: int, seed: int = 0) -> np.ndarray:
    """n distinct, saturated RGB colours (uint8, nx3), by golden-ratio hue steps."""
    cols = []
    for i in range(n):
        h = (0.58 + seed * 0.17 + i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.75, 1.0)
        cols.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(cols, dtype=np.uint8).reshape(n, 3)


def _edges(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(bool)
    e = np.zeros_like(m)
    e[1:, :] |= m[1:, :] != m[:-1, :]
    e[:, 1:] |= m[:, 1:] != m[:, :-1]
    return e & m


def overlay_masks(
    image: np.ndarray,
    masks: list[np.ndarray] | np.ndarray,
    colors: np.ndarray | None = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend each HxW bool mask over the HxWx3 uint8 image in its own colour, with outlines."""
    out = image.astype(np.float32).copy()
    masks = list(masks)
    colors = palette(len(masks)) if colors is None else np.asarray(colors, dtype=np.uint8)
    for m, c in zip(masks, colors):
        m = np.asarray(m, dtype=bool)
        out[m] = (1 - alpha) * out[m] + alpha * c.astype(np.float32)
        out[_edges(m)] = c
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw_prompts(
    image: np.ndarray,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
) -> np.ndarray:
    """Draw points (green = foreground, red = background) and an XYXY box on a copy."""
    im = Image.fromarray(image)
    d = ImageDraw.Draw(im)
    r = max(4, round(max(image.shape[:2]) / 150))
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(-1)[:4])
        d.rectangle([x0, y0, x1, y1], outline=(40, 170, 255), width=max(2, r // 2))
    if points is not None:
        labels = np.ones(len(points)) if labels is None else labels
        for (x, y), lab in zip(np.asarray(points, dtype=float), labels):
            fill = (30, 220, 60) if lab == 1 else (235, 40, 40) if lab == 0 else (160, 160, 160)
            d.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(255, 255, 255), width=2)
    return np.asarray(im)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically and close it; the format follows the suffix.

    The reports' charts (benchmarks, training curves) all go through here, so an
    interrupted run never leaves a half-written picture.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:  # the temporary name's suffix is not the format
        fig.savefig(tmp, dpi=dpi, format=path.suffix[1:].lower() or "png")
    plt.close(fig)
    return path
