"""Evaluation prompts derived from a reference mask (numpy only, deterministic).

Protocol (fixed here because the paper leaves it open):

* **point**: the pixel farthest from the mask's boundary, i.e. the maximum of the
  Euclidean distance transform of the mask, computed with a one-pixel background
  border around the image so the image edge counts as boundary; ties go to the first
  pixel in row-major order. Coordinates are (x, y) pixel indices in the image frame.
* **box**: the tight XYXY box of the mask (inclusive pixel indices).
* **two points at distance d**: the point above (label 1) plus a background point
  (label 0) at Euclidean distance ``d`` from it: the first of 72 directions (every
  5 degrees, starting along +x, counter-clockwise in image terms) whose rounded pixel
  lies inside the image and outside the mask. If no direction works the object is
  skipped for that ``d`` (and counted as skipped).
"""

from __future__ import annotations

import math

import numpy as np


def center_point(mask: np.ndarray) -> np.ndarray:
    """(x, y) float array of the distance-transform maximum of an HxW bool mask."""
    import cv2

    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("center_point: the mask is empty")
    padded = np.pad(mask, 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([x, y], dtype=np.float64)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """XYXY float array of the tight box of an HxW bool mask."""
    mask = np.asarray(mask, bool)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("mask_box: the mask is empty")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def background_point(mask: np.ndarray, origin: np.ndarray, distance: float) -> np.ndarray | None:
    """(x, y) of a pixel outside ``mask`` at ``distance`` from ``origin``, or None."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    for k in range(72):
        a = math.radians(5 * k)
        x = int(round(origin[0] + distance * math.cos(a)))
        y = int(round(origin[1] - distance * math.sin(a)))
        if 0 <= x < w and 0 <= y < h and not mask[y, x]:
            return np.array([x, y], dtype=np.float64)
    return None


def two_points(mask: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray] | None:
    """2x2 coords (foreground centre, background point) and labels [1, 0], or None."""
    fg = center_point(mask)
    bg = background_point(mask, fg, distance)
    if bg is None:
        return None
    return np.stack([fg, bg]), np.array([1, 0], dtype=np.int64)
