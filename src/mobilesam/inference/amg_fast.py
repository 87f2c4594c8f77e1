"""Fast path of the automatic mask generator: same masks, much less work.

Differences from the exact path (which follows the reference step by step):

* prompts are decoded by :class:`~.fast_decoder.FastPointDecoder` (per-prompt image
  tokens in low-rank form, never materialised; masks are upscaled only for prompts
  whose predicted IoU passes the filter, and only on the part of the grid that the
  post-processing resize reads);
* a candidate's full-resolution logits are computed only inside the window where
  they can exceed ``-stability_score_offset``: both bilinear resizes of the
  reference post-processing are convex combinations of low-res logits, so outside
  the window spanned by low-res logits above that level every full-size logit is
  below it and counts for neither the mask nor the stability score. Inside the
  window the two resizes are applied as one separable linear map;
* NMS runs on those boxes before any RLE is computed, so only kept masks are
  encoded;
* the image embedding of each crop is kept in the embedding cache
  (:mod:`.cache`), so calling ``generate`` again on the same image skips the encoder.

Scores, boxes and masks equal the exact path's up to float32 rounding. The
generator owns one :class:`FastCropProcessor` and calls it with explicit
arguments; it reads and writes nothing of the generator's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .cache import EmbeddingCache, ImageEmbedding, image_digest
from .fast_decoder import FastPointDecoder
from .grids import is_box_near_crop_edge, uncrop_boxes_xyxy, uncrop_points
from .masks import MaskRecords, batched_nms
from .predictor import SamPredictor
from .window_resize import MaskResizer, window_rle

__all__ = ["CropFilters", "FastCropProcessor"]


@dataclass(frozen=True)
class CropFilters:
    """The generator's per-crop settings the fast path needs (segment-anything's names)."""

    points_per_batch: int
    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float
    box_nms_thresh: float


def _window_candidate(
    resizer: MaskResizer, low: np.ndarray, thr: float, off: float, extent: np.ndarray
) -> tuple[np.float32, list[int], tuple[int, int, np.ndarray | None]]:
    """Exact stability, box (crop frame, inclusive) and tight mask of one low-res mask."""
    res = resizer.window_logits(low, thr - off, extent)
    if res is None:
        return np.float32("nan"), [0, 0, 0, 0], (0, 0, None)
    y0, x0, logits = res
    inter = np.count_nonzero(logits > thr + off)
    union = np.count_nonzero(logits > thr - off)
    stab = np.float32(inter) / np.float32(union) if union else np.float32("nan")
    mask = logits > thr
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return stab, [0, 0, 0, 0], (0, 0, None)
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    tight = np.ascontiguousarray(mask[r0 : r1 + 1, c0 : c1 + 1])
    return stab, [x0 + c0, y0 + r0, x0 + c1, y0 + r1], (y0 + r0, x0 + c0, tight)


@contextmanager
def _single_thread_blas() -> Iterator[None]:
    """numpy's BLAS on one thread: the window matmuls are small, and idle BLAS threads
    spinning beside torch's own threads slow both down on a busy CPU."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional speed-up
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class _Candidates:
    """Masks that passed the IoU and stability filters, in the reference's order."""

    def __init__(self) -> None:
        self.iou: list[float] = []
        self.stab: list[np.float32] = []
        self.points: list[np.ndarray] = []
        self.boxes: list[list[int]] = []
        self.masks: list[tuple[int, int, np.ndarray | None]] = []


class FastCropProcessor:
    """The fast path for one generator: the shared-embedding decoder and an embedding cache.

    ``predictor`` is the generator's (exact) predictor: it encodes crops and
    holds the image state; this class only adds the decoder and the cache.
    """

    def __init__(self, predictor: SamPredictor, cache_size: int = 8) -> None:
        self.predictor = predictor
        self.decoder = FastPointDecoder(predictor.model)
        self.cache: EmbeddingCache[ImageEmbedding] = EmbeddingCache(max_items=cache_size)

    def _encode(self, crop: np.ndarray) -> None:
        """set_image on the crop, or reuse its embedding from an earlier call."""
        p = self.predictor
        key = image_digest(crop)
        hit = self.cache.get(key)
        if hit is not None:
            p.set_embedding(hit.features, [hit.original_size], [hit.input_size])
            return
        p.set_image(crop)
        assert p.original_size is not None and p.input_size is not None
        self.cache.put(key, ImageEmbedding(p.features, p.original_size, p.input_size))

    def process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        orig_size: tuple[int, int],
        point_grid: np.ndarray,
        filters: CropFilters,
        timings: MutableMapping[str, float],
        on_batch: Callable[[], None] | None = None,
    ) -> MaskRecords:
        """Masks of one crop, as the generator's exact ``_process_crop`` returns them.

        point_grid: Nx2 normalised XY points of this crop layer; ``timings``
        accumulates seconds under ``encoder``, ``decoder`` and ``postprocess``;
        ``on_batch`` is called before each batch of points is decoded.
        """
        x0c, y0c, x1c, y1c = crop_box
        crop = image[y0c:y1c, x0c:x1c, :]
        t0 = time.perf_counter()
        self._encode(crop)
        p = self.predictor
        cropped_size = (int(crop.shape[0]), int(crop.shape[1]))
        fd = self.decoder
        assert p.features is not None and p.input_size is not None
        fd.set_embedding(p.features)
        timings["encoder"] += time.perf_counter() - t0

        with _single_thread_blas():
            resizer = MaskResizer(
                (4 * fd.grid[0], 4 * fd.grid[1]), p.model.image_size, p.input_size, cropped_size
            )
            points_all = point_grid * np.array(cropped_size)[None, ::-1]
            c = self._decode_crop(resizer, points_all, cropped_size, filters, timings, on_batch)
            t0 = time.perf_counter()
            data = self._select(c, crop_box, orig_size, filters.box_nms_thresh)
        p.reset_image()
        timings["postprocess"] += time.perf_counter() - t0
        return data

    @staticmethod
    def _select(
        c: _Candidates, crop_box: list[int], orig_size: tuple[int, int], nms_thresh: float
    ) -> MaskRecords:
        """Drop boxes at crop edges, NMS by predicted IoU, RLE only the masks kept."""
        x0c, y0c = crop_box[:2]
        boxes = torch.tensor(c.boxes, dtype=torch.int64).reshape(-1, 4)
        iou_t = torch.tensor(c.iou, dtype=torch.float32)
        near = is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_size[1], orig_size[0]])
        keep_idx = torch.nonzero(~near).flatten()
        boxes, iou_t = boxes[keep_idx], iou_t[keep_idx]
        nms_keep = batched_nms(boxes.float(), iou_t, torch.zeros(len(boxes)), nms_thresh)
        final = keep_idx[nms_keep].tolist()
        rles = [
            window_rle(m, y + y0c, x + x0c, orig_size) for (y, x, m) in (c.masks[i] for i in final)
        ]
        return MaskRecords(
            rles=rles,
            boxes=uncrop_boxes_xyxy(boxes[nms_keep], crop_box),
            iou_preds=iou_t[nms_keep],
            points=uncrop_points(
                torch.as_tensor(np.array([c.points[i] for i in final]).reshape(-1, 2)), crop_box
            ),
            stability_score=torch.tensor([c.stab[i] for i in final], dtype=torch.float32),
            crop_boxes=torch.tensor([crop_box] * len(final), dtype=torch.int64).reshape(-1, 4),
        )

    def _decode_crop(
        self,
        resizer: MaskResizer,
        points_all: np.ndarray,
        cropped_size: tuple[int, int],
        filters: CropFilters,
        tm: MutableMapping[str, float],
        on_batch: Callable[[], None] | None,
    ) -> _Candidates:
        """Decode the crop's points in batches; keep candidates passing both filters."""
        p = self.predictor
        fd = self.decoder
        thr = p.model.mask_threshold
        out = _Candidates()
        chunk = filters.points_per_batch  # memory knob, as in the reference
        # Only the part of the grid the resize reads is upscaled (the rest is padding);
        # a grid cell is 4x4 low-res pixels (the decoder's two 2x transposed convolutions).
        used = resizer.used_extent()
        region = (-(-used[0] // 4), -(-used[1] // 4))
        for s in range(0, len(points_all), chunk):
            if on_batch is not None:
                on_batch()
            t0 = time.perf_counter()
            points = points_all[s : s + chunk]
            coords = torch.as_tensor(
                p.transform.apply_coords(points, cropped_size), device=p.device
            )
            labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=p.device)
            tokens, keys = fd.transformer(
                fd.prompt_embeddings(coords[:, None, :], labels), mask_ids=(1, 2, 3)
            )
            iou = fd.iou(tokens)
            if filters.pred_iou_thresh > 0.0:
                keep = iou > filters.pred_iou_thresh
            else:
                keep = torch.ones_like(iou, dtype=torch.bool)
            sel = torch.nonzero(keep.any(dim=1)).flatten()
            if sel.numel() == 0:
                tm["decoder"] += time.perf_counter() - t0
                continue
            low = fd.masks(tokens, keys, select=sel, region=region)
            del keys
            t1 = time.perf_counter()
            tm["decoder"] += t1 - t0
            ksel = keep[sel]
            low_np = low[ksel].cpu().float().numpy()
            del low
            ious = iou[sel][ksel].cpu().tolist()
            pidx = sel.cpu()[:, None].expand(-1, 3)[ksel.cpu()].tolist()
            self._filter_candidates(
                resizer, low_np, ious, [points[i] for i in pidx], thr, filters, out
            )
            tm["postprocess"] += time.perf_counter() - t1
        return out

    @staticmethod
    def _filter_candidates(
        resizer: MaskResizer,
        low_np: np.ndarray,
        ious: list[float],
        points: list[np.ndarray],
        thr: float,
        filters: CropFilters,
        out: _Candidates,
    ) -> None:
        """Exact stability of the candidates the bound cannot reject; append those passing."""
        off = filters.stability_score_offset
        stab_thresh = filters.stability_score_thresh
        todo = range(len(low_np))
        if stab_thresh > 0.0:
            # A bound: what it rejects, the exact score rejects too.
            ub = np.concatenate(
                [
                    resizer.stability_upper_bound(low_np[i : i + 16], thr, off)
                    for i in range(0, len(low_np), 16)
                ]
            )
            todo = np.flatnonzero(ub >= stab_thresh).tolist()
        extents = np.zeros((len(low_np), 4), dtype=np.int64)
        if len(todo):
            extents[todo] = resizer.extents(low_np[todo], thr - off)
        for j in todo:
            stab, box, window = _window_candidate(resizer, low_np[j], thr, off, extents[j])
            if stab_thresh > 0.0 and not stab >= stab_thresh:
                continue
            out.iou.append(ious[j])
            out.stab.append(stab)
            out.points.append(points[j])
            out.boxes.append(box)
            out.masks.append(window)
