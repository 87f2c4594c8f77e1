"""The automatic mask generator's options and defaults, stated once (no torch import).

``SamAutomaticMaskGenerator`` takes its keyword defaults from here, the
``everything`` command builds its flags from :func:`option_fields`, and the web
service derives its request schema from the same dataclass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Ways of placing the point prompts: the full grid (segment-anything's), or a sparse
#: grid first and the full grid only where its confident masks leave gaps.
STRATEGIES = ("grid", "hierarchical")


@dataclass(frozen=True)
class AmgOptions:
    """Generator settings (see ``SamAutomaticMaskGenerator``).

    The first eleven are segment-anything's. ``strategy`` picks the point sampling;
    ``sparse_downscale_factor``, ``confident_pred_iou_thresh`` and
    ``confident_stability_score_thresh`` are the hierarchical strategy's (see
    :mod:`~.amg_hierarchical`); ``refine_boxes`` re-prompts each kept mask with its
    box (see :mod:`~.amg_refine`).
    """

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
    strategy: str = "grid"
    sparse_downscale_factor: int = 4
    confident_pred_iou_thresh: float = 0.92
    confident_stability_score_thresh: float = 0.97
    refine_boxes: bool = False

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``SamAutomaticMaskGenerator``."""
        return asdict(self)


def parse_bool(text: str) -> bool:
    """A command-line boolean: true/false, yes/no, on/off or 1/0 (any case)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def parse_strategy(text: str) -> str:
    """A command-line sampling strategy, one of :data:`STRATEGIES`."""
    if text not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {text!r}")
    return text


def option_fields() -> list[tuple[str, Callable[[str], Any], Any]]:
    """(name, parser from text, default) of every option, in declaration order.

    The parser is the default's type, except for booleans (``bool("false")`` is
    True, so :func:`parse_bool`) and ``strategy`` (:func:`parse_strategy`).
    """
    out: list[tuple[str, Callable[[str], Any], Any]] = []
    for f in fields(AmgOptions):
        parser: Callable[[str], Any] = type(f.default)
        if f.name == "strategy":
            parser = parse_strategy
        elif isinstance(f.default, bool):
            parser = parse_bool
        out.append((f.name, parser, f.default))
    return out
