"""Segment everything for the service: the generator options it exposes, and its records.

The options and their defaults come from
:class:`~mobilesam.inference.amg_options.AmgOptions`, the one source of the
automatic mask generator's settings; the service exposes five of them (the
others keep their defaults) and :mod:`mobilesam.serve.schemas` builds the
request body from the same names. Framework-free, like the service.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..inference.amg_options import AmgOptions
from .errors import ServeError

if TYPE_CHECKING:
    from ..inference.amg import SamAutomaticMaskGenerator
    from ..modeling import Sam

#: The generator options a request may set, in the order the API documents them.
EVERYTHING_OPTIONS = (
    "points_per_side",
    "pred_iou_thresh",
    "stability_score_thresh",
    "box_nms_thresh",
    "min_mask_region_area",
)

#: Their defaults: AmgOptions' (the official values).
EVERYTHING_DEFAULTS: dict[str, float | int] = {
    name: getattr(AmgOptions(), name) for name in EVERYTHING_OPTIONS
}


def everything_options(
    options: Mapping[str, float | int], max_points_per_side: int
) -> dict[str, float | int]:
    """All exposed options, defaults filled in and values of the defaults' types.

    Raises ``ServeError`` 400 ``bad_options`` for an unknown option or a grid
    over ``max_points_per_side`` (the service's cost limit).
    """
    unknown = set(options) - set(EVERYTHING_DEFAULTS)
    if unknown:
        raise ServeError(400, "bad_options", f"unknown options: {', '.join(sorted(unknown))}")
    opts = {
        name: type(default)(options.get(name, default))
        for name, default in EVERYTHING_DEFAULTS.items()
    }
    pps = opts["points_per_side"]
    if not 1 <= pps <= max_points_per_side:
        raise ServeError(
            400,
            "bad_options",
            f"points_per_side must be 1-{max_points_per_side}, got {pps}",
        )
    return opts


def make_generator(model: Sam, options: Mapping[str, float | int]) -> SamAutomaticMaskGenerator:
    """The automatic mask generator in its fast mode, answering COCO RLEs."""
    from ..inference.amg import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(model, fast=True, output_mode="coco_rle", **options)


def count_batches(generator: SamAutomaticMaskGenerator, size: tuple[int, int]) -> int:
    """How many batches of point prompts ``generator`` decodes for an (H, W) image."""
    from ..inference.grids import generate_crop_boxes

    _, layer_idxs = generate_crop_boxes(size, generator.crop_n_layers, generator.crop_overlap_ratio)
    per = generator.points_per_batch
    return sum(math.ceil(len(generator.point_grids[i]) / per) for i in layer_idxs)


def watch_batches(
    generator: SamAutomaticMaskGenerator, on_batch: Callable[[], None]
) -> SamAutomaticMaskGenerator:
    """Make ``generator`` call ``on_batch()`` before decoding each batch of point prompts.

    The one place a long ``generate`` can report progress and stop (by raising
    from ``on_batch``); the generator must be this caller's own (the service
    makes one per job).
    """
    generator.on_batch = on_batch
    return generator


def ann_record(ann: dict[str, Any]) -> dict[str, Any]:
    """A generator record with plain JSON types (RLE counts as text)."""
    seg = ann["segmentation"]
    counts = seg["counts"]
    return {
        "segmentation": {
            "size": [int(v) for v in seg["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
        },
        "area": int(ann["area"]),
        "bbox": [float(v) for v in ann["bbox"]],
        "predicted_iou": float(ann["predicted_iou"]),
        "stability_score": float(ann["stability_score"]),
        "point_coords": [[float(x), float(y)] for x, y in np.asarray(ann["point_coords"])],
        "crop_box": [float(v) for v in ann["crop_box"]],
    }
