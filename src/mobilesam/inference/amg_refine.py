"""Box refinement for the automatic mask generator: each kept mask's box sent back as a prompt.

A single point is an ambiguous prompt; the tight box of a mask found from it is
not. After the point pass(es) of a crop (grid or hierarchical), the boxes of the
kept masks are decoded as box prompts in batches (single-mask output, the
unambiguous head), and the box's mask *replaces* the point's mask when all of:

* its predicted IoU is higher than the point mask's;
* it passes the usual filters (``pred_iou_thresh``, ``stability_score_thresh``,
  not on a crop edge that is not an image edge, not empty);
* it overlaps the point mask with mask IoU ``>= min_overlap`` (it still is the
  same object, so a box that drifts to a neighbour does not lose the original).

A replaced record gets the new mask, box, predicted IoU and stability score and
keeps its point. The crop's records are NMS'd again by predicted IoU with
``box_nms_thresh`` (replaced masks may now duplicate another). Masks are never
added: the count can only stay or drop. ``docs/everything.md`` says whether it helps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping, Sequence

import numpy as np
import torch

from .amg_fast import CropFilters
from .grids import is_box_near_crop_edge, uncrop_boxes_xyxy, uncrop_masks
from .masks import (
    MaskRecords,
    batched_mask_to_box,
    batched_nms,
    calculate_stability_score,
    mask_iou,
    mask_to_rle,
    rle_to_mask,
)
from .predictor import SamPredictor

__all__ = ["BoxRefiner"]


class BoxRefiner:
    """Re-prompts a crop's kept masks with their boxes (see the module docstring).

    ``predictor`` must hold the crop's embedding when :meth:`refine` is called.
    """

    def __init__(self, predictor: SamPredictor, *, min_overlap: float = 0.5) -> None:
        self.predictor = predictor
        self.min_overlap = float(min_overlap)

    @torch.no_grad()
    def refine(
        self,
        data: MaskRecords,
        crop_box: Sequence[int],
        orig_size: tuple[int, int],
        filters: CropFilters,
        timings: MutableMapping[str, float],
        on_batch: Callable[[], None] | None = None,
    ) -> tuple[MaskRecords, int]:
        """The crop's records with better box masks swapped in; and how many were swapped.

        ``data``: the crop's kept records (boxes XYXY inclusive and RLEs in the
        original image frame, ``orig_size`` = (H, W)). ``timings`` accumulates
        ``decoder`` and ``postprocess`` seconds; ``on_batch`` runs before each batch.
        """
        if len(data) == 0:
            return data, 0
        data["rles"] = list(data["rles"])
        replaced = 0
        for s in range(0, len(data), filters.points_per_batch):
            if on_batch is not None:
                on_batch()
            idx = list(range(s, min(s + filters.points_per_batch, len(data))))
            replaced += self._refine_batch(data, idx, crop_box, orig_size, filters, timings)
        t0 = time.perf_counter()
        keep = batched_nms(
            data["boxes"].float(),
            data["iou_preds"],
            torch.zeros_like(data["boxes"][:, 0]),
            filters.box_nms_thresh,
        )
        data.filter(keep)
        timings["postprocess"] += time.perf_counter() - t0
        return data, replaced

    def _refine_batch(
        self,
        data: MaskRecords,
        idx: list[int],
        crop_box: Sequence[int],
        orig_size: tuple[int, int],
        filters: CropFilters,
        timings: MutableMapping[str, float],
    ) -> int:
        p = self.predictor
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        h, w = orig_size
        t0 = time.perf_counter()
        offset = torch.tensor([[x0, y0, x0, y0]])
        boxes = (data["boxes"][idx].cpu() - offset).numpy().astype(np.float64)
        prompts = torch.as_tensor(
            p.transform.apply_boxes(boxes, (y1 - y0, x1 - x0)), dtype=torch.float32, device=p.device
        )
        logits, iou, _ = p.predict_torch(
            None, None, boxes=prompts, multimask_output=False, return_logits=True
        )
        t1 = time.perf_counter()
        timings["decoder"] += t1 - t0
        thr = p.model.mask_threshold
        logits, iou = logits[:, 0], iou[:, 0].float().cpu()
        stab = calculate_stability_score(logits, thr, filters.stability_score_offset).cpu()
        masks = (logits > thr).cpu()
        del logits
        new_boxes = batched_mask_to_box(masks)
        ok = masks.flatten(1).any(dim=1) & ~is_box_near_crop_edge(new_boxes, crop_box, [0, 0, w, h])
        ok &= iou > data["iou_preds"][idx].cpu().float()
        if filters.pred_iou_thresh > 0.0:
            ok &= iou > filters.pred_iou_thresh
        if filters.stability_score_thresh > 0.0:
            ok &= stab >= filters.stability_score_thresh
        replaced = 0
        for j in torch.nonzero(ok).flatten().tolist():
            i = idx[j]
            old = rle_to_mask(data["rles"][i])[y0:y1, x0:x1]
            if mask_iou(old, masks[j].numpy()) < self.min_overlap:
                continue
            data["rles"][i] = mask_to_rle(uncrop_masks(masks[j : j + 1], crop_box, h, w))[0]
            data["boxes"][i] = uncrop_boxes_xyxy(new_boxes[j : j + 1], crop_box)[0].to(
                data["boxes"]
            )
            data["iou_preds"][i] = iou[j].to(data["iou_preds"])
            data["stability_score"][i] = stab[j].to(data["stability_score"])
            replaced += 1
        timings["postprocess"] += time.perf_counter() - t1
        return replaced
