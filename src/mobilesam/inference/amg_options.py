"""The automatic mask generator's options and defaults, stated once (no torch import).

``SamAutomaticMaskGenerator`` takes its keyword defaults from here, the
``everything`` command builds its flags from :func:`option_fields`, and the web
service derives its request schema from the same dataclass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class AmgOptions:
    """segment-anything's generator settings (see ``SamAutomaticMaskGenerator``)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``SamAutomaticMaskGenerator``."""
        return asdict(self)


def option_fields() -> list[tuple[str, type, Any]]:
    """(name, type, default) of every option, in declaration order."""
    return [(f.name, type(f.default), f.default) for f in fields(AmgOptions)]
