"""Point grids and image crops for automatic mask generation.

Frames: point grids are normalised XY in [0, 1]; crop boxes are XYXY integer
pixel boxes of the original image (max exclusive); "uncropping" moves crop-frame
boxes, points and masks back to the original image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import product
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "batch_iterator",
    "build_all_layer_point_grids",
    "build_point_grid",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n)x2 float64 grid of cell centres in [0, 1], x varying fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """One grid per crop layer; layer i has ``int(n / scale**i)`` points per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (XYXY ints) and their layer indices; layer 0 is the whole image.

    Layer i >= 1 tiles the image with ``2**i`` crops per side that overlap by
    ``int(overlap_ratio * short_side * 2 / 2**i)`` pixels; crops are listed with
    x0 in the outer loop.
    """
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    boxes: list[list[int]] = [[0, 0, im_w, im_h]]
    layers = [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i_layer in range(n_layers):
        n_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_side))
        crop_w = crop_len(im_w, n_side, overlap)
        crop_h = crop_len(im_h, n_side, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_side)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(i_layer + 1)
    return boxes, layers


def batch_iterator(batch_size: int, *args: Sequence[Any]) -> Iterator[list[Any]]:
    """Yield aligned slices of ``batch_size`` from equally long sequences."""
    if not args or any(len(a) != len(args[0]) for a in args):
        raise ValueError("batch_iterator needs one or more sequences of the same length")
    n = len(args[0])
    for s in range(0, n, batch_size):
        yield [a[s : s + batch_size] for a in args]


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """...x4 crop-frame XYXY boxes -> original image frame."""
    x0, y0 = crop_box[0], crop_box[1]
    offset = torch.tensor([[x0, y0, x0, y0]], device=boxes.device)
    if boxes.ndim == 3:
        offset = offset.unsqueeze(1)
    return boxes + offset


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """...x2 crop-frame XY points -> original image frame."""
    offset = torch.tensor([[crop_box[0], crop_box[1]]], device=points.device)
    if points.ndim == 3:
        offset = offset.unsqueeze(1)
    return points + offset


def uncrop_masks(
    masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int
) -> torch.Tensor:
    """...xhxw crop masks -> ...xHxW, zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    pad = (x0, orig_w - x1, y0, orig_h - y1)
    return F.pad(masks, pad, value=0)


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """Nx4 crop-frame boxes -> N bool: within ``atol`` px of a crop edge that is not an
    image edge."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(boxes, crop[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, orig[None, :], atol=atol, rtol=0)
    return torch.any(near_crop & ~near_image, dim=1)
