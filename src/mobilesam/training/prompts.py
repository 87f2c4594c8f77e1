"""Prompt sampling from ground-truth masks, as in SAM's training recipe.

All coordinates are (x, y) pixels in the model's input frame (the scene is rendered at
the model's input size, so that is also the image frame). Functions take a torch
``Generator`` so a run is reproducible.

* :func:`sample_points`: one point drawn uniformly from each mask's pixels.
* :func:`jittered_boxes`: each mask's tight box, every coordinate moved by Gaussian
  noise with std 10% of the box side, clipped to ``max_jitter`` pixels (SAM: 20 px at
  1024 px), then clipped to the image.
* :func:`correction_points`: the next interactive click: drawn uniformly from the error
  region of the previous prediction; label 1 on a missed object pixel (false negative),
  0 on a wrongly included pixel (false positive).
"""

from __future__ import annotations

import torch


def _uniform_pixel(region: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random (x, y) per NxHxW bool region (regions must be non-empty) -> Nx2 float."""
    n, h, w = region.shape
    flat = region.reshape(n, -1).float()
    if bool((flat.sum(1) == 0).any()):
        raise ValueError("cannot sample a point from an empty mask")
    idx = torch.multinomial(flat, 1, generator=gen).squeeze(1)
    return torch.stack([(idx % w).float(), (idx // w).float()], dim=1)


def sample_points(masks: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Nx1x2 point coords and Nx1 labels (all 1) from NxHxW bool masks."""
    pts = _uniform_pixel(masks.bool(), gen)
    return pts[:, None, :], torch.ones(pts.shape[0], 1)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (Nx4 float, inclusive pixel indices) of NxHxW bool masks."""
    n = masks.shape[0]
    if n == 0:
        return torch.zeros(0, 4)
    if bool((masks.flatten(1).sum(1) == 0).any()):
        raise ValueError("an empty mask has no box")
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    h, w = masks.shape[1:]
    ar_h = torch.arange(h).expand(n, h)
    ar_w = torch.arange(w).expand(n, w)
    y0 = torch.where(rows, ar_h, h).min(1).values
    y1 = torch.where(rows, ar_h, -1).max(1).values
    x0 = torch.where(cols, ar_w, w).min(1).values
    x1 = torch.where(cols, ar_w, -1).max(1).values
    return torch.stack([x0, y0, x1, y1], 1).float()


def jittered_boxes(
    masks: torch.Tensor, gen: torch.Generator, rel_std: float = 0.1, max_jitter: float = 5.0
) -> torch.Tensor:
    """Nx4 XYXY boxes of the masks with SAM-style noise (see the module docstring)."""
    boxes = mask_boxes(masks.bool())
    h, w = masks.shape[1:]
    side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1).clamp(min=1)
    std = (rel_std * side).repeat(1, 2)
    noise = (torch.randn(boxes.shape, generator=gen) * std).clamp(-max_jitter, max_jitter)
    out = boxes + noise
    out[:, 0::2] = out[:, 0::2].clamp(0, w - 1)
    out[:, 1::2] = out[:, 1::2].clamp(0, h - 1)
    # keep x0 <= x1, y0 <= y1 after the noise
    x0, x1 = torch.minimum(out[:, 0], out[:, 2]), torch.maximum(out[:, 0], out[:, 2])
    y0, y1 = torch.minimum(out[:, 1], out[:, 3]), torch.maximum(out[:, 1], out[:, 3])
    return torch.stack([x0, y0, x1, y1], 1)


def correction_points(
    pred: torch.Tensor, gt: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nx1x2 coords and Nx1 labels of the next click given NxHxW bool ``pred`` and ``gt``.

    Where the prediction is already perfect the click is a positive point inside the mask.
    """
    pred, gt = pred.bool(), gt.bool()
    error = pred ^ gt
    perfect = error.flatten(1).sum(1) == 0
    region = torch.where(perfect[:, None, None], gt, error)
    pts = _uniform_pixel(region, gen)
    xi = pts[:, 0].long()
    yi = pts[:, 1].long()
    labels = gt[torch.arange(gt.shape[0]), yi, xi].float()
    return pts[:, None, :], labels[:, None]
