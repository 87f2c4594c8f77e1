"""Hierarchical point sampling for the automatic mask generator: sparse first, dense where needed.

The grid strategy prompts every point of an ``n x n`` grid. Most of those points
land inside an object that a few neighbouring points already segment well, and
each of them costs a decoder run. The hierarchical strategy (after TinySAM's
"hierarchical segment everything") spends the dense grid only where it is needed:

1. **Sparse pass.** Prompt an ``s x s`` grid, ``s = max(1, n // sparse_downscale_factor)``
   (8 x 8 for the default 32 points per side and factor 4), with the usual filters
   (``pred_iou_thresh``, ``stability_score_thresh``, crop-edge rule, NMS).
2. **Confident masks.** Of the sparse pass's kept masks, those with predicted IoU
   ``>= confident_pred_iou_thresh`` and stability ``>= confident_stability_score_thresh``
   are *confident*; their union is the covered area. (A confident mask also passed
   the usual filters, so thresholds below the usual ones act as the usual ones.)
3. **Dense pass.** Prompt the points of the usual ``n x n`` grid that fall outside
   the covered area (a point is looked up at the pixel it lands on, in the frame of
   the original image).
4. **Merge.** Both passes' masks are pooled and NMS'd by predicted IoU with
   ``box_nms_thresh``, as the grid's masks of one crop are; crop layers and their
   cross-crop NMS are unchanged.

Every mask of the sparse pass is kept (not only the confident ones); only the
confident ones decide where the dense grid is skipped. The sparse points are extra
prompts, not a subset of the dense grid, so the number of prompts is
``s*s + (dense points left uncovered)``: the strategy saves time when confident
masks cover more than ``1 / factor**2`` of the image, and costs a little more than
the grid when they cover nothing (a weak model, or thresholds it never reaches).

What it gives up: a dense point inside a confident mask is never prompted, so the
masks only it would have produced (a part of a covered object, or a small object
hidden under a confident mask's area) are missed. ``docs/everything.md`` has the
measured cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .grids import build_point_grid
from .masks import MaskRecords, batched_nms, rle_to_mask

__all__ = ["HierarchicalSampler"]

#: Decodes an Mx2 grid of normalised crop-frame XY points into the crop's kept masks:
#: filtered, NMS'd, RLEs in the original image frame (what a crop of the grid gives).
DecodeFn = Callable[[np.ndarray], MaskRecords]


@dataclass(frozen=True)
class HierarchicalSampler:
    """The two-pass rule for one generator; see the module docstring.

    ``nms_thresh`` is the generator's ``box_nms_thresh`` (the merge NMS).
    """

    downscale_factor: int
    confident_pred_iou_thresh: float
    confident_stability_score_thresh: float
    nms_thresh: float

    def __post_init__(self) -> None:
        if int(self.downscale_factor) < 1:
            raise ValueError(f"sparse_downscale_factor must be >= 1, got {self.downscale_factor}")

    def sparse_side(self, points_per_side: int) -> int:
        """Points per side of the sparse grid for a dense grid of ``points_per_side``."""
        return max(1, int(points_per_side) // int(self.downscale_factor))

    def sample(
        self,
        decode: DecodeFn,
        points_per_side: int,
        crop_box: Sequence[int],
        orig_size: tuple[int, int],
    ) -> tuple[MaskRecords, int]:
        """Masks of one crop from the sparse pass plus the uncovered dense points.

        ``crop_box`` XYXY in the original image (``orig_size`` = (H, W)). Returns the
        merged records and the number of points prompted (both passes).
        """
        sparse_grid = build_point_grid(self.sparse_side(points_per_side))
        sparse = decode(sparse_grid)
        dense_grid = build_point_grid(int(points_per_side))
        covered = self.covered_points(sparse, dense_grid, crop_box, orig_size)
        todo = dense_grid[~covered]
        if len(todo) == 0:
            return sparse, len(sparse_grid)
        merged = MaskRecords()
        merged.cat(sparse)
        merged.cat(decode(todo))
        if len(merged) > 0:
            keep = batched_nms(
                merged["boxes"].float(),
                merged["iou_preds"],
                torch.zeros_like(merged["boxes"][:, 0]),
                self.nms_thresh,
            )
            merged.filter(keep)
        return merged, len(sparse_grid) + len(todo)

    def confident(self, records: MaskRecords) -> np.ndarray:
        """N bool: which records are confident (both high thresholds reached)."""
        if len(records) == 0:
            return np.zeros(0, dtype=bool)
        iou = records["iou_preds"].detach().cpu().float().numpy()
        stab = records["stability_score"].detach().cpu().float().numpy()
        return (iou >= self.confident_pred_iou_thresh) & (
            stab >= self.confident_stability_score_thresh
        )

    def covered_points(
        self,
        records: MaskRecords,
        grid: np.ndarray,
        crop_box: Sequence[int],
        orig_size: tuple[int, int],
    ) -> np.ndarray:
        """M bool: grid points (normalised crop-frame XY) inside a confident mask.

        Masks are read from the records' RLEs (original image frame); a point is
        looked up at the pixel that contains it.
        """
        hits = np.zeros(len(grid), dtype=bool)
        which = np.flatnonzero(self.confident(records))
        if which.size == 0 or len(grid) == 0:
            return hits
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        h, w = orig_size
        cols = np.clip(np.floor(grid[:, 0] * (x1 - x0)).astype(np.int64) + x0, 0, w - 1)
        rows = np.clip(np.floor(grid[:, 1] * (y1 - y0)).astype(np.int64) + y0, 0, h - 1)
        rles = records["rles"]
        for i in which.tolist():
            hits |= rle_to_mask(rles[i])[rows, cols]
        return hits
