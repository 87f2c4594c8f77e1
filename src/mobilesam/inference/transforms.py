"""Resize-longest-side transform: the one place where images are resized.

``apply_image`` resizes with Pillow's bilinear filter on the uint8 image
(antialiased when shrinking, rounded back to uint8), exactly what the official
predictor does through torchvision; prompts are scaled by the same factors.
"""

from __future__ import annotations

from copy import deepcopy
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is optional here: the torch-free runtime shares this module
    import torch


def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
    """(h, w) after scaling the longest side to ``long_side_length`` (round half up)."""
    scale = long_side_length * 1.0 / max(oldh, oldw)
    newh, neww = oldh * scale, oldw * scale
    return int(newh + 0.5), int(neww + 0.5)


class ResizeLongestSide:
    """Scale images and prompt coordinates so the longest image side is ``target_length``."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 -> h'xw'x3 uint8 (Pillow bilinear)."""
        h, w = image.shape[:2]
        newh, neww = get_preprocess_shape(h, w, self.target_length)
        pil = Image.fromarray(np.ascontiguousarray(image))
        return np.array(pil.resize((neww, newh), Image.Resampling.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """(..., 2) XY in the original image -> float64 XY in the resized image."""
        old_h, old_w = original_size
        new_h, new_w = get_preprocess_shape(old_h, old_w, self.target_length)
        coords = deepcopy(coords).astype(float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """(..., 4) XYXY boxes -> Nx4 in the resized image."""
        boxes = self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size)
        return boxes.reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """Bx3xHxW float -> resized, with torch's antialiased bilinear.

        Not bit-identical to :meth:`apply_image` (Pillow, uint8 rounding); the
        predictor's ``set_image`` uses :meth:`apply_image`.
        """
        import torch.nn.functional as F

        target = get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, target, mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(
        self, coords: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """Torch version of :meth:`apply_coords` (float32 result)."""
        import torch

        old_h, old_w = original_size
        new_h, new_w = get_preprocess_shape(old_h, old_w, self.target_length)
        coords = deepcopy(coords).to(torch.float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes_torch(
        self, boxes: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """Torch version of :meth:`apply_boxes`."""
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)
