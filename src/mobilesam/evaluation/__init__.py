"""Evaluation: the paper's alignment protocols (mIoU of A's masks against B's or GT)."""

from __future__ import annotations

from ..inference.masks import mask_iou  # re-exported: the package's one mask IoU
from .alignment import EvalConfig, evaluate_alignment, format_table
from .metrics import mean_iou
from .prompts import background_point, center_point, mask_box, two_points

__all__ = [
    "EvalConfig",
    "background_point",
    "center_point",
    "evaluate_alignment",
    "format_table",
    "mask_box",
    "mask_iou",
    "mean_iou",
    "two_points",
]
