"""How good a shapes-world model is against exact ground truth, the way users prompt it.

Three numbers on held-out scenes, each through the public inference API
(:class:`~mobilesam.SamPredictor`, :class:`~mobilesam.SamAutomaticMaskGenerator`):

* **point**: mIoU of the mask chosen by predicted IoU (three outputs) for one click at the
  object's centre (:func:`~mobilesam.evaluation.center_point`);
* **box**: mIoU of the single mask for the object's tight box;
* **everything recall**: the share of ground-truth objects that segment-everything, with the
  generator's default filters unless told otherwise, finds with IoU >= ``recall_iou``. It runs
  the generator's fast path (``fast=True``, as ``mobilesam everything`` does): the exact path's
  masks, several times sooner.

Why segment-everything misses an object is mostly visible from the one-click mask already (a
grid point inside an object asks what the click asks): ``point_passes_filters`` is the share of
objects whose one-click mask passes the generator's predicted-IoU and stability filters, with
the per-object predicted IoU and stability score kept beside it. ``point_oracle_miou`` (the
best of the three one-click masks, as the SAM paper's "oracle" reports it) and the means by
object size (:meth:`Quality.by_size`) tell whether a weak one-click number comes from choosing
among good masks or from the masks themselves, and whether small objects carry it.

Which scenes: the caller says (``split_seeds("heldout", n, start)``). The trainer monitors
another slice of the held-out range (:data:`~mobilesam.training.trainer.MONITOR_OFFSET`), so
numbers reported with ``start=0`` come from scenes that never steered a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..data.shapes import Scene
from ..inference.masks import mask_iou

SIZE_BINS = (("small <1%", 0.0, 0.01), ("medium 1-4%", 0.01, 0.04), ("large >=4%", 0.04, 1.01))


@dataclass
class Quality:
    """Per-metric means over all ground-truth objects of the evaluated scenes."""

    scenes: int
    objects: int
    point_miou: float
    box_miou: float
    everything_recall: float | None
    masks_per_scene: float | None
    point_passes_filters: float  # one-click masks that the generator's filters would keep
    point_oracle_miou: float  # the best of the three one-click masks, chosen by ground truth
    per_object: dict[str, list[float]] = field(default_factory=dict, repr=False)
    kinds: list[str] = field(default_factory=list, repr=False)  # shape of each object

    def by_kind(self, metric: str = "point") -> dict[str, float]:
        """Mean of a per-object metric for each shape kind (where the model fails)."""
        values = np.asarray(self.per_object.get(metric, []), dtype=float)
        kinds = np.asarray(self.kinds[: len(values)])
        return {k: float(values[kinds == k].mean()) for k in sorted(set(kinds.tolist()))}

    def by_size(self, metric: str = "point") -> dict[str, float]:
        """Mean of a per-object metric by visible area (share of the image), in three bins."""
        values = np.asarray(self.per_object.get(metric, []), dtype=float)
        area = np.asarray(self.per_object.get("area", []), dtype=float)[: len(values)]
        out = {}
        for name, lo, hi in SIZE_BINS:
            inside = (area >= lo) & (area < hi)
            if inside.any():
                out[name] = float(values[inside].mean())
        return out

    def to_dict(self) -> dict[str, Any]:
        """The summary numbers (per-object lists left out), with the per-kind means."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        d["point_miou_by_kind"] = self.by_kind("point")
        d["box_miou_by_kind"] = self.by_kind("box")
        d["point_miou_by_size"] = self.by_size("point")
        return d


def found_objects(gt: np.ndarray, found: list[np.ndarray], min_iou: float) -> np.ndarray:
    """Per ground-truth mask (NxHxW), whether some found mask overlaps it with IoU >= min_iou."""
    hit = np.zeros(len(gt), dtype=bool)
    if not found:
        return hit
    flat_found = np.stack([f.reshape(-1) for f in found]).astype(np.float32)
    flat_gt = gt.reshape(len(gt), -1).astype(np.float32)
    inter = flat_gt @ flat_found.T
    union = flat_gt.sum(1)[:, None] + flat_found.sum(1)[None, :] - inter
    ious = inter / np.maximum(union, 1.0)
    return ious.max(axis=1) >= min_iou


def one_click(predictor: Any, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A click at ``gt``'s centre on the predictor's image: the three low-res-upscaled logit
    maps (3xHxW), their predicted IoUs, and the index the predicted IoU chooses."""
    from ..evaluation.prompts import center_point

    logits, scores, _ = predictor.predict(
        point_coords=center_point(gt)[None], point_labels=np.array([1]), return_logits=True
    )
    return logits, scores, int(np.argmax(scores))


def evaluate_quality(
    model: Any,
    scenes: Iterable[Scene],
    everything: bool = True,
    recall_iou: float = 0.5,
    generator_options: dict[str, Any] | None = None,
) -> Quality:
    """Point, box and segment-everything quality of ``model`` on ``scenes`` (see module doc).

    ``generator_options`` are passed to :class:`~mobilesam.SamAutomaticMaskGenerator`
    (default: its defaults and ``fast=True``, as the ``everything`` command runs it).
    """
    import torch

    from .. import SamAutomaticMaskGenerator, SamPredictor
    from ..evaluation.prompts import mask_box
    from ..inference.amg_options import AmgOptions
    from ..inference.masks import calculate_stability_score

    options = {"fast": True, **(generator_options or {})}
    iou_thresh, stability_thresh, offset = (
        options.get(k, getattr(AmgOptions, k))
        for k in ("pred_iou_thresh", "stability_score_thresh", "stability_score_offset")
    )
    predictor = SamPredictor(model)
    generator = SamAutomaticMaskGenerator(model, **options) if everything else None
    point, oracle, area, box, recall, masks, kinds = [], [], [], [], [], [], []
    pred_iou, stability = [], []
    count = 0
    for scene in scenes:
        count += 1
        if len(scene) == 0:
            continue
        predictor.set_image(scene.image)
        kinds.extend(scene.kinds)
        for gt in scene.masks:
            logits, scores, best = one_click(predictor, gt)
            ious = [float(mask_iou(lg > model.mask_threshold, gt)) for lg in logits]
            point.append(ious[best])
            oracle.append(max(ious))
            area.append(float(gt.mean()))
            pred_iou.append(float(scores[best]))
            stable = calculate_stability_score(
                torch.from_numpy(logits[best]), model.mask_threshold, offset
            )
            stability.append(float(stable))
            out, _, _ = predictor.predict(box=mask_box(gt), multimask_output=False)
            box.append(float(mask_iou(out[0], gt)))
        if generator is not None:
            anns = generator.generate(scene.image)
            found = [a["segmentation"] for a in anns]
            recall.extend(found_objects(scene.masks, found, recall_iou).tolist())
            masks.append(len(found))
    return Quality(
        scenes=count,
        objects=len(point),
        point_miou=float(np.mean(point)) if point else float("nan"),
        box_miou=float(np.mean(box)) if box else float("nan"),
        everything_recall=float(np.mean(recall)) if generator is not None and recall else None,
        masks_per_scene=float(np.mean(masks)) if generator is not None and masks else None,
        point_passes_filters=float(
            np.mean(
                (np.asarray(pred_iou) >= iou_thresh)
                & (np.nan_to_num(stability) >= stability_thresh)
            )
        )
        if point
        else float("nan"),
        point_oracle_miou=float(np.mean(oracle)) if oracle else float("nan"),
        per_object={
            "point": point,
            "point_oracle": oracle,
            "area": area,
            "box": box,
            "everything": [float(r) for r in recall],
            "point_pred_iou": pred_iou,
            "point_stability": stability,
        },
        kinds=kinds,
    )
