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
    from ..inference.cache import ImageEmbedding
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


class KnownEmbedding:
    """An encoder backend that answers an image's embedding computed earlier.

    The service encoded every upload once already; a segment-everything job
    reuses that embedding instead of running the encoder again. Any other
    input (a crop of the image) goes to ``fallback``. Matching is by the
    resized pixels themselves, so a crop that resizes to the same shape is
    never mistaken for the whole image.
    """

    def __init__(self, fallback: Any, resized: np.ndarray, features: Any) -> None:
        self.image_size = fallback.image_size
        self.image_format = fallback.image_format
        self._fallback = fallback
        self._resized = resized
        self._features = features

    def encode(self, images: Any) -> Any:
        if len(images) == 1 and np.array_equal(images[0], self._resized):
            return self._features
        return self._fallback.encode(images)


def run_everything(
    model: Sam,
    image: np.ndarray,
    options: Mapping[str, float | int],
    embedding: ImageEmbedding | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Segment everything in an HxWx3 RGB image: JSON records, largest first.

    ``embedding``: the image's embedding if already known (not computed
    again). ``on_batch(done, total)`` is called before each batch of prompts,
    with the batches done so far and their total: progress, and a place to
    stop by raising. The one body of a job, in a thread or a worker process.
    """
    generator = make_generator(model, options)
    if embedding is not None:
        predictor = generator.predictor
        resized, _ = predictor.prepare_image(image)
        predictor.encoder = KnownEmbedding(predictor.encoder, resized, embedding.features)
    if on_batch is not None:
        total = count_batches(generator, image.shape[:2])
        done = 0

        def batch() -> None:
            nonlocal done
            on_batch(done, total)
            done += 1

        watch_batches(generator, batch)
    anns = generator.generate(image)
    return sorted((ann_record(a) for a in anns), key=lambda r: -r["area"])


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
