"""SamAutomaticMaskGenerator: masks for everything in an image, from a grid of point prompts.

Drop-in for segment-anything's generator (same arguments, same output records;
the defaults come from :class:`~.amg_options.AmgOptions`, the one statement of
them). ``fast=True`` selects a path that returns the same masks with far less
work (:class:`~.amg_fast.FastCropProcessor`, which the generator owns); the
default is the exact path, which follows the reference implementation step by step.
``strategy="hierarchical"`` prompts a sparse grid first and the dense grid only
where its confident masks leave gaps (:mod:`~.amg_hierarchical`);
``refine_boxes=True`` sends the kept masks' boxes back as prompts
(:mod:`~.amg_refine`). Both work on either path and with crops.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..modeling import Sam
from .amg_fast import CropFilters, FastCropProcessor
from .amg_hierarchical import DecodeFn, HierarchicalSampler
from .amg_options import STRATEGIES, AmgOptions
from .amg_refine import BoxRefiner
from .cache import image_digest
from .core import EncoderBackend
from .grids import (
    batch_iterator,
    build_all_layer_point_grids,
    generate_crop_boxes,
    is_box_near_crop_edge,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from .masks import (
    MaskRecords,
    area_from_rle,
    batched_mask_to_box,
    batched_nms,
    box_area,
    box_xyxy_to_xywh,
    calculate_stability_score,
    coco_encode_rle,
    mask_to_rle,
    remove_small_regions,
    rle_to_mask,
)
from .predictor import SamPredictor
from .validation import as_rgb_uint8

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
_D = AmgOptions()


class SamAutomaticMaskGenerator:
    """Generate masks for a whole image by prompting SAM with a grid of points.

    Arguments are segment-anything's: ``points_per_side`` (or explicit
    ``point_grids``, normalised XY), ``points_per_batch`` prompts decoded at once,
    ``pred_iou_thresh`` / ``stability_score_thresh`` filters, ``box_nms_thresh``
    within a crop, ``crop_n_layers`` extra crop layers (``crop_nms_thresh``,
    ``crop_overlap_ratio``, ``crop_n_points_downscale_factor``),
    ``min_mask_region_area`` hole/island clean-up and ``output_mode``.
    ``fast=True`` selects the low-resolution filtering path; ``encoder`` runs
    the image encoder on another backend (see :mod:`mobilesam.backends`).

    ``strategy="hierarchical"`` (needs ``points_per_side``) prompts a grid of
    ``points_per_side // sparse_downscale_factor`` points per side first, then the
    full grid's points outside the masks of that pass that reach
    ``confident_pred_iou_thresh`` and ``confident_stability_score_thresh``; see
    :mod:`~.amg_hierarchical`. ``refine_boxes=True`` re-prompts every kept mask
    with its box and keeps the box's mask where it is better; see :mod:`~.amg_refine`.
    """

    def __init__(
        self,
        model: Sam,
        points_per_side: int | None = _D.points_per_side,
        points_per_batch: int = _D.points_per_batch,
        pred_iou_thresh: float = _D.pred_iou_thresh,
        stability_score_thresh: float = _D.stability_score_thresh,
        stability_score_offset: float = _D.stability_score_offset,
        box_nms_thresh: float = _D.box_nms_thresh,
        crop_n_layers: int = _D.crop_n_layers,
        crop_nms_thresh: float = _D.crop_nms_thresh,
        crop_overlap_ratio: float = _D.crop_overlap_ratio,
        crop_n_points_downscale_factor: int = _D.crop_n_points_downscale_factor,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = _D.min_mask_region_area,
        output_mode: str = "binary_mask",
        strategy: str = _D.strategy,
        sparse_downscale_factor: int = _D.sparse_downscale_factor,
        confident_pred_iou_thresh: float = _D.confident_pred_iou_thresh,
        confident_stability_score_thresh: float = _D.confident_stability_score_thresh,
        refine_boxes: bool = _D.refine_boxes,
        *,
        fast: bool = False,
        encoder: EncoderBackend | None = None,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("exactly one of points_per_side and point_grids must be given")
        if points_per_side is not None:
            if int(points_per_side) < 1:
                raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
            point_grids = build_all_layer_point_grids(
                int(points_per_side), crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            point_grids = [np.asarray(g, dtype=np.float64) for g in point_grids]
            if len(point_grids) != crop_n_layers + 1:
                raise ValueError(
                    f"point_grids has {len(point_grids)} grids, crop_n_layers={crop_n_layers} "
                    f"needs {crop_n_layers + 1}"
                )
            for g in point_grids:
                if g.ndim != 2 or g.shape[1] != 2:
                    raise ValueError(f"each point grid must be Nx2 (normalised XY), got {g.shape}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if strategy == "hierarchical" and points_per_side is None:
            # The sparse pass is a coarser copy of a regular grid; explicit grids have none.
            raise ValueError("strategy='hierarchical' needs points_per_side, not point_grids")
        if int(points_per_batch) < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        if output_mode == "coco_rle":
            import pycocotools.mask  # noqa: F401  (fail early, not after minutes of work)
        if min_mask_region_area > 0:
            import cv2  # noqa: F401

        self.predictor = SamPredictor(model, encoder=encoder)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.point_grids = point_grids
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.fast = bool(fast)
        self.strategy = strategy
        self.hierarchy: HierarchicalSampler | None = None
        if strategy == "hierarchical":
            self.hierarchy = HierarchicalSampler(
                downscale_factor=int(sparse_downscale_factor),
                confident_pred_iou_thresh=confident_pred_iou_thresh,
                confident_stability_score_thresh=confident_stability_score_thresh,
                nms_thresh=box_nms_thresh,
            )
        self.refiner = BoxRefiner(self.predictor) if refine_boxes else None
        self.timings: dict[str, float] = defaultdict(float)
        # Prompts decoded by the last ``generate``: ``points`` and ``boxes`` (refinement),
        # and ``refined``, the masks a box prompt replaced.
        self.counts: dict[str, int] = defaultdict(int)
        self._fast: FastCropProcessor | None = None
        # Called before each batch of prompts is decoded (both paths, point and box
        # batches): where a long ``generate`` can report progress, or stop by raising.
        self.on_batch: Callable[[], None] | None = None

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """All masks of an HxWx3 uint8 RGB image, as segment-anything's records.

        Each record: ``segmentation`` (HxW bool, or an RLE dict), ``area`` (int),
        ``bbox`` XYWH, ``predicted_iou``, ``point_coords`` ``[[x, y]]``,
        ``stability_score``, ``crop_box`` XYWH; in NMS keep order.
        ``self.timings`` holds seconds spent in ``encoder``, ``decoder`` and
        ``postprocess`` during this call.
        """
        image = as_rgb_uint8(image)
        self.timings = defaultdict(float)
        self.counts = defaultdict(int)
        data = self._generate_masks(image)
        t0 = time.perf_counter()
        if self.min_mask_region_area > 0:
            data = self.postprocess_small_regions(
                data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )
        anns = self._records_to_annotations(data)
        self.timings["postprocess"] += time.perf_counter() - t0
        return anns

    def _records_to_annotations(self, data: MaskRecords) -> list[dict[str, Any]]:
        if len(data) == 0:
            return []
        rles = data["rles"]
        if self.output_mode == "coco_rle":
            segs: list[Any] = [coco_encode_rle(r) for r in rles]
        elif self.output_mode == "binary_mask":
            segs = [rle_to_mask(r) for r in rles]
        else:
            segs = rles
        boxes = data["boxes"].cpu()
        crops = data["crop_boxes"].cpu()
        ious = data["iou_preds"].cpu().tolist()
        stab = data["stability_score"].cpu().tolist()
        points = data["points"].cpu().tolist()
        return [
            {
                "segmentation": segs[i],
                "area": area_from_rle(rles[i]),
                "bbox": box_xyxy_to_xywh(boxes[i]),
                "predicted_iou": ious[i],
                "point_coords": [points[i]],
                "stability_score": stab[i],
                "crop_box": box_xyxy_to_xywh(crops[i]),
            }
            for i in range(len(rles))
        ]

    # ---------------------------------------------------------------- stages
    def _generate_masks(self, image: np.ndarray) -> MaskRecords:
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(
            orig_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        data = MaskRecords()
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs):
            if self.fast:
                crop_data = self._fast_crop(image, crop_box, layer_idx, orig_size)
            else:
                crop_data = self._process_crop(image, crop_box, layer_idx, orig_size)
            data.cat(crop_data)
        if len(crop_boxes) > 1 and len(data) > 0:
            t0 = time.perf_counter()
            # Prefer masks from smaller crops.
            scores = 1 / box_area(data["crop_boxes"])
            keep = batched_nms(
                data["boxes"].float(),
                scores.to(data["boxes"].device),
                torch.zeros_like(data["boxes"][:, 0]),
                self.crop_nms_thresh,
            )
            data.filter(keep)
            self.timings["postprocess"] += time.perf_counter() - t0
        return data

    def _sample_crop(
        self, decode: DecodeFn, crop_box: list[int], layer_idx: int, orig_size: tuple[int, int]
    ) -> MaskRecords:
        """The crop's kept masks from its points: the layer's grid, or the two passes."""
        grid = self.point_grids[layer_idx]
        if self.hierarchy is None:
            self.counts["points"] += len(grid)
            return decode(grid)
        side = int(round(np.sqrt(len(grid))))  # layer grids are square
        data, n_points = self.hierarchy.sample(decode, side, crop_box, orig_size)
        self.counts["points"] += n_points
        return data

    def _refine_crop(
        self, data: MaskRecords, crop_box: list[int], orig_size: tuple[int, int]
    ) -> MaskRecords:
        """Box refinement of a crop's masks; the predictor holds the crop's embedding."""
        if self.refiner is None or len(data) == 0:
            return data
        self.counts["boxes"] += len(data)
        data, replaced = self.refiner.refine(
            data, crop_box, orig_size, self._crop_filters(), self.timings, self.on_batch
        )
        self.counts["refined"] += replaced
        return data

    def _fast_crop(
        self, image: np.ndarray, crop_box: list[int], layer_idx: int, orig_size: tuple[int, int]
    ) -> MaskRecords:
        fast = self._fast_processor()

        def decode(grid: np.ndarray) -> MaskRecords:
            return fast.process_crop(
                image,
                crop_box,
                orig_size,
                grid,
                self._crop_filters(),
                self.timings,
                self.on_batch,
            )

        data = self._sample_crop(decode, crop_box, layer_idx, orig_size)
        if self.refiner is not None and len(data) > 0:
            # The processor has let go of the crop; its embedding is in the processor's cache.
            x0, y0, x1, y1 = crop_box
            crop = image[y0:y1, x0:x1, :]
            hit = fast.cache.get(image_digest(crop))
            if hit is None:
                self._set_crop(image, crop_box)
            else:
                self.predictor.set_embedding(hit.features, [hit.original_size], [hit.input_size])
            data = self._refine_crop(data, crop_box, orig_size)
            self.predictor.reset_image()
        return data

    def _fast_processor(self) -> FastCropProcessor:
        if self._fast is None:
            self._fast = FastCropProcessor(self.predictor)
        return self._fast

    def _crop_filters(self) -> CropFilters:
        return CropFilters(
            points_per_batch=self.points_per_batch,
            pred_iou_thresh=self.pred_iou_thresh,
            stability_score_thresh=self.stability_score_thresh,
            stability_score_offset=self.stability_score_offset,
            box_nms_thresh=self.box_nms_thresh,
        )

    def _set_crop(self, image: np.ndarray, crop_box: list[int]) -> tuple[int, int]:
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        t0 = time.perf_counter()
        self.predictor.set_image(cropped)
        self.timings["encoder"] += time.perf_counter() - t0
        return cropped.shape[:2]

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], layer_idx: int, orig_size: tuple[int, int]
    ) -> MaskRecords:
        cropped_size = self._set_crop(image, crop_box)
        points_scale = np.array(cropped_size)[None, ::-1]

        def decode(grid: np.ndarray) -> MaskRecords:
            data = MaskRecords()
            for (points,) in batch_iterator(self.points_per_batch, grid * points_scale):
                if self.on_batch is not None:
                    self.on_batch()
                data.cat(self._process_batch(points, cropped_size, crop_box, orig_size))
            return self._finish_crop(data, crop_box)

        data = self._sample_crop(decode, crop_box, layer_idx, orig_size)
        data = self._refine_crop(data, crop_box, orig_size)
        self.predictor.reset_image()
        return data

    def _finish_crop(self, data: MaskRecords, crop_box: list[int]) -> MaskRecords:
        """NMS within a crop by predicted IoU, then move boxes and points to the image frame."""
        t0 = time.perf_counter()
        keep = batched_nms(
            data["boxes"].float(),
            data["iou_preds"],
            torch.zeros_like(data["boxes"][:, 0]),
            self.box_nms_thresh,
        )
        data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor([crop_box] * len(data), dtype=torch.int64).reshape(-1, 4)
        self.timings["postprocess"] += time.perf_counter() - t0
        return data

    def _process_batch(
        self,
        points: np.ndarray,
        im_size: tuple[int, int],
        crop_box: list[int],
        orig_size: tuple[int, int],
    ) -> MaskRecords:
        orig_h, orig_w = orig_size
        t0 = time.perf_counter()
        transformed = self.predictor.transform.apply_coords(points, im_size)
        in_points = torch.as_tensor(transformed, device=self.predictor.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        masks, iou_preds, _ = self.predictor.predict_torch(
            in_points[:, None, :], in_labels[:, None], multimask_output=True, return_logits=True
        )
        t1 = time.perf_counter()
        self.timings["decoder"] += t1 - t0
        data = MaskRecords(
            masks=masks.flatten(0, 1),
            iou_preds=iou_preds.flatten(0, 1),
            points=torch.as_tensor(points.repeat(masks.shape[1], axis=0)),
        )
        del masks
        thr = self.predictor.model.mask_threshold
        if self.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > self.pred_iou_thresh)
        data["stability_score"] = calculate_stability_score(
            data["masks"], thr, self.stability_score_offset
        )
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        data["masks"] = data["masks"] > thr
        data["boxes"] = batched_mask_to_box(data["masks"])
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            data.filter(keep)
        data["rles"] = mask_to_rle(uncrop_masks(data["masks"], crop_box, orig_h, orig_w))
        del data["masks"]
        self.timings["postprocess"] += time.perf_counter() - t1
        return data

    @staticmethod
    def postprocess_small_regions(
        mask_data: MaskRecords, min_area: int, nms_thresh: float
    ) -> MaskRecords:
        """Fill small holes and drop small islands, then NMS preferring unchanged masks.

        Changed masks that survive get a new RLE and box; their scores are kept.
        """
        if len(mask_data) == 0:
            return mask_data
        new_masks = []
        scores = []
        for rle in mask_data["rles"]:
            mask = rle_to_mask(rle)
            mask, changed_holes = remove_small_regions(mask, min_area, mode="holes")
            mask, changed_islands = remove_small_regions(mask, min_area, mode="islands")
            new_masks.append(torch.as_tensor(mask).unsqueeze(0))
            scores.append(float(not (changed_holes or changed_islands)))
        masks = torch.cat(new_masks, dim=0)
        boxes = batched_mask_to_box(masks)
        keep = batched_nms(
            boxes.float(), torch.as_tensor(scores), torch.zeros_like(boxes[:, 0]), nms_thresh
        )
        rles = list(mask_data["rles"])
        for i in keep.tolist():
            if scores[i] == 0.0:
                rles[i] = mask_to_rle(masks[i].unsqueeze(0))[0]
                mask_data["boxes"][i] = boxes[i].to(mask_data["boxes"].device)
        mask_data["rles"] = rles
        mask_data.filter(keep)
        return mask_data
