"""Shapes world: synthetic RGB scenes with exact instance masks, deterministic by seed.

A scene is a background (solid, gradient, stripes or low-frequency noise) with a few
objects painted in order: polygons, ellipses, stars, rings and thin strokes, each with a
solid, gradient, striped, checkered or noisy fill. Later objects occlude earlier ones,
and every instance mask is the set of pixels where that object is *visible* in the final
image, so masks never overlap and are exact (shapes are rasterised without
anti-aliasing; pixel noise is added to the image only). Objects left with fewer than
``min_visible`` pixels are kept in the picture but not listed as instances.

Everything is numpy + OpenCV; no torch. ``render_scene(seed)`` always returns the same
pixels for the same seed and config.

Splits: ``train`` seeds are ``[0, 1_000_000)`` and ``heldout`` seeds are
``[1_000_000, 2_000_000)``; :func:`split_seeds` only hands out seeds from a split's own
range, so the two never share a scene.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 1_000_000),
    "heldout": (1_000_000, 2_000_000),
}
KINDS = ("polygon", "ellipse", "star", "ring", "thin")
FILLS = ("solid", "gradient", "stripes", "checker", "noise")
BACKGROUNDS = ("solid", "gradient", "stripes", "noise")


@dataclass(frozen=True)
class ShapesConfig:
    """How scenes look. ``size`` is the side of the square image in pixels."""

    size: int = 256
    min_objects: int = 2
    max_objects: int = 6
    kinds: tuple[str, ...] = KINDS
    min_radius: float = 0.06  # object radius range, as a fraction of ``size``
    max_radius: float = 0.22
    noise_std: float = 6.0  # Gaussian pixel noise (0-255 units), drawn per scene up to this
    min_visible: float = 0.002  # smallest listed instance, as a fraction of the image area

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"scene size must be at least 32 pixels, got {self.size}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {self.kinds}")


@dataclass
class Scene:
    """One rendered scene.

    ``image``: HxWx3 uint8 RGB. ``masks``: NxHxW bool, visible pixels of each listed
    object (disjoint). ``kinds``: N shape names, in painting order (later = on top).
    """

    seed: int
    image: np.ndarray
    masks: np.ndarray
    kinds: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.masks.shape[0])


def split_seeds(split: str, count: int, start: int = 0) -> list[int]:
    """``count`` seeds of ``split``: the split's first seed + ``start`` onwards."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    lo, hi = SPLITS[split]
    if count < 0 or start < 0 or lo + start + count > hi:
        raise ValueError(f"{split} has {hi - lo} seeds; asked for [{start}, {start + count})")
    return list(range(lo + start, lo + start + count))


def split_of(seed: int) -> str:
    """The split a seed belongs to."""
    for name, (lo, hi) in SPLITS.items():
        if lo <= seed < hi:
            return name
    raise ValueError(f"seed {seed} is in no split")


# ----------------------------------------------------------------------------- colours, fills


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _distinct_color(rng: np.random.Generator, avoid: np.ndarray, min_dist: float = 60.0):
    """A random colour at least ``min_dist`` (RGB Euclidean) from ``avoid`` (a few tries)."""
    c = _color(rng)
    for _ in range(8):
        if np.linalg.norm(c - avoid) >= min_dist:
            break
        c = _color(rng)
    return c


def _lowfreq_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1], HxW float32 (bilinear upsampling of a coarse random grid)."""
    import cv2

    grid = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def _pattern(rng: np.random.Generator, size: int, kind: str, base: np.ndarray) -> np.ndarray:
    """An HxWx3 float32 texture of ``kind`` around colour ``base``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    other = _distinct_color(rng, base, 50.0)
    if kind == "solid":
        t = np.zeros((size, size), np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        proj = np.cos(angle) * xx + np.sin(angle) * yy
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    elif kind == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(0.02, 0.08) * size
        proj = np.cos(angle) * xx + np.sin(angle) * yy
        t = (np.sin(2 * np.pi * proj / period) > 0).astype(np.float32)
    elif kind == "checker":
        cell = max(2, int(rng.uniform(0.02, 0.06) * size))
        t = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    elif kind == "noise":
        t = _lowfreq_noise(rng, size, int(rng.integers(4, 16)))
    else:
        raise ValueError(f"unknown fill {kind!r}")
    return base[None, None, :] * (1 - t[..., None]) + other[None, None, :] * t[..., None]


# ----------------------------------------------------------------------------- shapes


def _shape_mask(rng: np.random.Generator, kind: str, cfg: ShapesConfig) -> np.ndarray:
    """Binary HxW uint8 mask of one shape at a random place, size and rotation."""
    import cv2

    s = cfg.size
    m = np.zeros((s, s), np.uint8)
    r = rng.uniform(cfg.min_radius, cfg.max_radius) * s
    cx, cy = rng.uniform(0.05, 0.95, size=2) * s
    rot = rng.uniform(0, 2 * np.pi)
    if kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n)) + rot
        radii = r * rng.uniform(0.55, 1.0, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1, lineType=cv2.LINE_8)
    elif kind == "star":
        n = int(rng.integers(4, 8))
        inner = rng.uniform(0.35, 0.6)
        angles = rot + np.arange(2 * n) * np.pi / n
        radii = np.where(np.arange(2 * n) % 2 == 0, r, r * inner)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1, lineType=cv2.LINE_8)
    elif kind in ("ellipse", "ring"):
        axes = (max(2, int(r)), max(2, int(r * rng.uniform(0.4, 1.0))))
        center = (int(round(cx)), int(round(cy)))
        deg = float(np.degrees(rot))
        cv2.ellipse(m, center, axes, deg, 0, 360, 1, thickness=-1, lineType=cv2.LINE_8)
        if kind == "ring":
            k = rng.uniform(0.45, 0.75)
            hole = (max(1, int(axes[0] * k)), max(1, int(axes[1] * k)))
            cv2.ellipse(m, center, hole, deg, 0, 360, 0, thickness=-1, lineType=cv2.LINE_8)
    elif kind == "thin":
        # a thin bar or a bent stroke, 2-5% of the image side wide
        width = max(2, int(rng.uniform(0.02, 0.05) * s))
        n = int(rng.integers(2, 4))
        length = 2 * r
        pts = [np.array([cx, cy])]
        heading = rot
        for _ in range(n - 1):
            heading += rng.uniform(-1.0, 1.0)
            step = length / (n - 1)
            pts.append(pts[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
        poly = np.round(np.stack(pts)).astype(np.int32)
        cv2.polylines(m, [poly], False, 1, thickness=width, lineType=cv2.LINE_8)
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    return m


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    fill = {"solid": "solid", "gradient": "gradient", "stripes": "stripes", "noise": "noise"}[kind]
    return _pattern(rng, size, fill, _color(rng))


def render_scene(seed: int, config: ShapesConfig | None = None) -> Scene:
    """Render the scene of ``seed`` (any non-negative int; see :data:`SPLITS`)."""
    cfg = config or ShapesConfig()
    rng = np.random.default_rng([seed, cfg.size])
    s = cfg.size
    image = _background(rng, s)
    bg_mean = image.reshape(-1, 3).mean(0)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    owner = np.full((s, s), -1, np.int32)  # which object each pixel shows (-1: background)
    kinds: list[str] = []
    for i in range(n):
        kind = cfg.kinds[int(rng.integers(len(cfg.kinds)))]
        mask = _shape_mask(rng, kind, cfg).astype(bool)
        fill = FILLS[int(rng.integers(len(FILLS)))]
        texture = _pattern(rng, s, fill, _distinct_color(rng, bg_mean))
        image[mask] = texture[mask]
        owner[mask] = i
        kinds.append(kind)
    sigma = rng.uniform(0, cfg.noise_std)
    image = image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    min_pixels = max(1, int(cfg.min_visible * s * s))
    masks, kept = [], []
    for i, kind in enumerate(kinds):
        visible = owner == i
        if int(visible.sum()) >= min_pixels:
            masks.append(visible)
            kept.append(kind)
    stack = np.stack(masks) if masks else np.zeros((0, s, s), bool)
    return Scene(seed=seed, image=image, masks=stack, kinds=kept)


def iter_scenes(
    split: str, count: int, config: ShapesConfig | None = None, start: int = 0
) -> Iterator[Scene]:
    """Scenes ``start .. start + count - 1`` of ``split``, rendered one at a time."""
    for seed in split_seeds(split, count, start):
        yield render_scene(seed, config)


def write_scenes(
    out: str | Path,
    split: str,
    count: int,
    config: ShapesConfig | None = None,
    start: int = 0,
    progress: bool = True,
) -> Path:
    """Write scenes as ``<out>/<seed>.png`` plus ground truth ``<out>/gt/<seed>.npz``.

    Each ``.npz`` holds ``masks`` (NxHxW bool) and ``kinds``; this is the ground-truth
    layout ``mobilesam eval --gt`` reads. Files are written atomically
    (:mod:`mobilesam.io`). Returns ``out``.
    """
    from tqdm import tqdm

    from ..io import atomic_write, save_png

    out = Path(out)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    seeds = split_seeds(split, count, start)
    for seed in tqdm(seeds, desc=f"scenes/{split}", unit="img", disable=not progress):
        scene = render_scene(seed, config)
        name = f"{seed:07d}"
        save_png(out / f"{name}.png", scene.image)
        with atomic_write(out / "gt" / f"{name}.npz", "wb") as f:
            np.savez_compressed(f, masks=scene.masks, kinds=scene.kinds)
    return out
