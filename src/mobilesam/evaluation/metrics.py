"""Averaging mask agreement (numpy only).

The per-mask IoU is :func:`mobilesam.inference.masks.mask_iou`, the package's one
binary-mask IoU; this module only averages such values.
"""

from __future__ import annotations

import numpy as np


def mean_iou(values: list[float] | np.ndarray) -> float:
    """Mean of IoU values (NaN when there are none)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")
