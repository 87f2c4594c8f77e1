"""Mask utilities for automatic mask generation: boxes, scores, NMS, RLE, clean-up.

Conventions: masks are ``...xHxW`` bool tensors (or HxW numpy arrays), boxes are
XYXY with *inclusive* max coordinates (the last foreground column/row), scores are
float. Uncompressed RLE follows COCO: ``{"size": [H, W], "counts": [...]}`` with
column-major (Fortran order) runs that start with a background run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "area_from_rle",
    "batched_mask_to_box",
    "batched_nms",
    "box_area",
    "box_iou_matrix",
    "box_xyxy_to_xywh",
    "calculate_stability_score",
    "MaskRecords",
    "coco_encode_rle",
    "mask_iou",
    "mask_to_rle",
    "nms",
    "remove_small_regions",
    "rle_to_mask",
]


# ------------------------------------------------------------------------ masks
def mask_iou(a: Any, b: Any) -> Any:
    """IoU of binary masks over their last two axes; two empty masks agree perfectly (1.0).

    ``a`` and ``b`` are ``...xHxW`` (bool, or anything that is nonzero inside)
    numpy arrays or torch tensors of one shape. Returns a float for HxW masks,
    else an array / tensor of shape ``...`` (float64 for numpy, float32 for torch).
    """
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"mask shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        at, bt = torch.as_tensor(a).bool().flatten(-2), torch.as_tensor(b).bool().flatten(-2)
        inter = (at & bt).sum(-1).float()
        union = (at | bt).sum(-1).float()
        out = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        return float(out) if at.ndim == 1 else out
    an = np.asarray(a, bool).reshape(*np.shape(a)[:-2], -1)
    bn = np.asarray(b, bool).reshape(*np.shape(b)[:-2], -1)
    inter = np.logical_and(an, bn).sum(-1, dtype=np.float64)
    union = np.logical_or(an, bn).sum(-1, dtype=np.float64)
    out = np.where(union > 0, inter / np.maximum(union, 1.0), 1.0)
    return float(out) if an.ndim == 1 else out


# ------------------------------------------------------------------------ boxes
def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes of ``...xHxW`` bool masks -> ``...x4`` int64.

    Max coordinates are inclusive; an empty mask gives ``[0, 0, 0, 0]``.
    """
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)
    shape = masks.shape
    h, w = shape[-2:]
    flat = masks.reshape(-1, h, w)
    rows = flat.any(dim=-1)  # N x H
    cols = flat.any(dim=-2)  # N x W
    out = torch.cat([_first_last(cols, w), _first_last(rows, h)], dim=-1)
    # (x0, x1, y0, y1) -> (x0, y0, x1, y1)
    out = out[:, [0, 2, 1, 3]]
    return out.reshape(*shape[:-2], 4)


def _first_last(present: torch.Tensor, n: int) -> torch.Tensor:
    """N x n bool -> N x 2 (first, last) True index, (0, 0) where none."""
    idx = torch.arange(n, device=present.device)
    last = torch.where(present, idx, -1).amax(dim=-1)
    first = torch.where(present, idx, n).amin(dim=-1)
    empty = last < 0
    first = first.masked_fill(empty, 0)
    last = last.masked_fill(empty, 0)
    return torch.stack([first, last], dim=-1)


def box_xyxy_to_xywh(box: torch.Tensor | np.ndarray | list[Any]) -> list[Any]:
    """One XYXY box -> ``[x0, y0, x1 - x0, y1 - y0]`` (plain python numbers)."""
    x0, y0, x1, y1 = (v.item() if hasattr(v, "item") else v for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Nx4 XYXY -> N areas ``(x1 - x0) * (y1 - y0)`` (torchvision's convention)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou_matrix(boxes: torch.Tensor) -> torch.Tensor:
    """NxN IoU of float XYXY boxes, computed as torchvision's NMS kernel does."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    area = (x1 - x0) * (y1 - y0)
    w = (torch.minimum(x1[:, None], x1[None, :]) - torch.maximum(x0[:, None], x0[None, :])).clamp(
        min=0
    )
    h = (torch.minimum(y1[:, None], y1[None, :]) - torch.maximum(y0[:, None], y0[None, :])).clamp(
        min=0
    )
    inter = w * h
    return inter / (area[:, None] + area[None, :] - inter)


# -------------------------------------------------------------------------- NMS
def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS; returns kept indices (int64) in descending score order.

    Same decisions as ``torchvision.ops.nms``: a stable descending sort by score,
    and a box is suppressed by a kept box when their IoU is ``> iou_threshold``.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes.float()[order]
    over = (box_iou_matrix(b) > iou_threshold).cpu().numpy()
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS applied independently per category ``idxs``; kept indices by descending score.

    ``boxes`` Nx4 float XYXY, ``scores`` N, ``idxs`` N integer categories
    (torchvision's ``batched_nms`` semantics; ties keep their input order).
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    keep = []
    for c in torch.unique(idxs):
        where = torch.nonzero(idxs == c).flatten()
        keep.append(where[nms(boxes[where], scores[where], iou_threshold)])
    kept = torch.sort(torch.cat(keep)).values
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


# --------------------------------------------------------------------- scoring
def calculate_stability_score(
    logits: torch.Tensor, mask_threshold: float, threshold_offset: float
) -> torch.Tensor:
    """Stability of ``...xHxW`` logits: IoU of the masks at threshold +/- offset.

    ``#(logit > t + o) / #(logit > t - o)``; rows are summed in int16 first, as
    the reference does. Returns float32 of shape ``...``; 0/0 gives NaN.
    """
    inter = (logits > (mask_threshold + threshold_offset)).sum(-1, dtype=torch.int16)
    union = (logits > (mask_threshold - threshold_offset)).sum(-1, dtype=torch.int16)
    return inter.sum(-1, dtype=torch.int32) / union.sum(-1, dtype=torch.int32)


# -------------------------------------------------------------------------- RLE
def mask_to_rle(masks: torch.Tensor, chunk_pixels: int = 1 << 26) -> list[dict[str, Any]]:
    """BxHxW bool masks -> uncompressed RLEs (column-major, background run first).

    Vectorised: one ``nonzero`` per chunk of masks (chunks bound the memory).
    """
    b, h, w = masks.shape
    step = max(1, chunk_pixels // max(1, h * w))
    out: list[dict[str, Any]] = []
    for s in range(0, b, step):
        out.extend(_rle_chunk(masks[s : s + step], h, w))
    return out


def _rle_chunk(masks: torch.Tensor, h: int, w: int) -> list[dict[str, Any]]:
    b = masks.shape[0]
    flat = masks.permute(0, 2, 1).reshape(b, h * w).cpu()
    change = torch.nonzero(flat[:, 1:] != flat[:, :-1])  # (row, position), sorted by row
    per_row = torch.bincount(change[:, 0], minlength=b).tolist()
    positions = torch.split(change[:, 1] + 1, per_row)
    first = flat[:, 0].tolist()
    total = h * w
    out = []
    for i in range(b):
        bounds = np.concatenate(([0], positions[i].numpy(), [total]))
        runs = np.diff(bounds).tolist()
        out.append({"size": [h, w], "counts": [0] + runs if first[i] else runs})
    return out


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE -> HxW bool array (C-contiguous)."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.ascontiguousarray(np.repeat(values, counts).reshape(w, h).T)


def area_from_rle(rle: dict[str, Any]) -> int:
    """Foreground pixel count of an uncompressed RLE."""
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(uncompressed_rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> COCO compressed RLE (``counts`` as a str) via pycocotools."""
    from pycocotools import mask as mask_utils

    h, w = uncompressed_rle["size"]
    rle = mask_utils.frPyObjects(uncompressed_rle, h, w)
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


# ---------------------------------------------------------------- small regions
def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``"islands"``) smaller than ``area_thresh``.

    ``mask`` HxW bool. 8-connectivity (OpenCV). When every island is small, the
    largest one is kept. Returns the new mask and whether anything changed.
    """
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    work = (holes ^ mask).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(work, 8)
    sizes = stats[:, -1][1:]  # label 0 is the background of ``work``
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n_labels) if i not in fill]
        if not fill:  # every island is small: keep the largest
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


# ---------------------------------------------------------------------- records
class MaskRecords:
    """Column store of candidate masks: equal-length tensors or lists, filtered together.

    Columns: ``rles`` (list), ``boxes`` Nx4 XYXY (inclusive max, original frame
    once uncropped), ``iou_preds`` N, ``stability_score`` N, ``points`` Nx2 XY,
    ``crop_boxes`` Nx4 XYXY.
    """

    def __init__(self, **columns: Any) -> None:
        self.columns: dict[str, Any] = dict(columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, key: str) -> Any:
        return self.columns[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.columns[key] = value

    def __delitem__(self, key: str) -> None:
        del self.columns[key]

    def filter(self, keep: torch.Tensor) -> None:
        """Keep rows by a bool mask or an index tensor (in that order)."""
        idx = torch.nonzero(keep).flatten() if keep.dtype == torch.bool else keep
        idx_list = idx.tolist()
        for k, v in self.columns.items():
            if isinstance(v, torch.Tensor):
                self.columns[k] = v[idx.to(v.device)]
            elif isinstance(v, np.ndarray):
                self.columns[k] = v[np.asarray(idx_list, dtype=np.int64)]
            else:
                self.columns[k] = [v[i] for i in idx_list]

    def cat(self, other: MaskRecords) -> None:
        """Append another record set with the same columns."""
        if not self.columns:
            self.columns = dict(other.columns)
            return
        for k, v in other.columns.items():
            if isinstance(v, torch.Tensor):
                self.columns[k] = torch.cat([self.columns[k], v], dim=0)
            else:
                self.columns[k] = list(self.columns[k]) + list(v)
