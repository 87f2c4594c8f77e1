"""Checks and conversions of user input (images, prompts), numpy only.

Every problem becomes a ``ValueError`` that names the argument and says what
was expected, instead of a shape error from deep inside the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

VALID_LABELS = (-1, 0, 1)


def as_rgb_uint8(image: Any, image_format: str = "RGB", name: str = "image") -> np.ndarray:
    """Return an HxWx3 uint8 RGB array.

    Accepts HxWx3 (RGB or BGR per ``image_format``), HxW and HxWx1 grayscale
    (replicated to 3 channels) and HxWx4 with alpha (alpha dropped); a PIL image
    is converted with ``numpy.asarray``.
    """
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if not isinstance(image, np.ndarray):
        if hasattr(image, "mode") and hasattr(image, "size"):  # PIL image
            image = np.asarray(image)
        else:
            raise ValueError(
                f"{name} must be a numpy array (HxWx3 uint8), got {type(image).__name__}"
            )
    if image.dtype != np.uint8:
        raise ValueError(
            f"{name} must have dtype uint8 (0-255), got {image.dtype}; "
            "convert float images with (img * 255).round().astype(np.uint8)"
        )
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    elif not (image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(
            f"{name} must be HxWx3 (or HxW grayscale, HxWx4 with alpha), got shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {image.shape}")
    if image_format == "BGR":
        image = image[..., ::-1]
    return np.ascontiguousarray(image)


def _finite_array(value: Any, name: str, dtype: type = np.float64) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError):  # huge Python ints overflow
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_points(
    point_coords: Any, point_labels: Any, batched: bool = False
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validate points: Nx2 coords and N labels in {1, 0, -1} (BxNx2 / BxN if batched)."""
    if point_coords is None and point_labels is None:
        return None, None
    if point_coords is None or point_labels is None:
        raise ValueError("point_coords and point_labels must be given together")
    coords = _finite_array(point_coords, "point_coords")
    labels_raw = np.asarray(point_labels)
    if labels_raw.dtype.kind not in "iuf" or not np.all(np.isfinite(labels_raw)):
        raise ValueError("point_labels must be numbers (1 foreground, 0 background, -1 ignore)")
    if labels_raw.dtype.kind == "f" and not np.all(labels_raw == np.round(labels_raw)):
        raise ValueError("point_labels must be integers (1 foreground, 0 background, -1 ignore)")
    labels = labels_raw.astype(np.int64)
    want = 3 if batched else 2
    shape_txt = "BxNx2" if batched else "Nx2"
    if coords.ndim != want or coords.shape[-1] != 2:
        raise ValueError(f"point_coords must have shape {shape_txt}, got {coords.shape}")
    if labels.shape != coords.shape[:-1]:
        raise ValueError(
            f"point_labels must have shape {coords.shape[:-1]} to match point_coords "
            f"{coords.shape}, got {labels.shape}"
        )
    bad = ~np.isin(labels, VALID_LABELS)
    if bad.any():
        raise ValueError(
            f"point_labels must be 1 (foreground), 0 (background) or -1 (ignore), "
            f"got {sorted(set(labels[bad].tolist()))}"
        )
    return coords, labels


def check_boxes(box: Any, name: str = "box", batched: bool = False) -> np.ndarray | None:
    """Validate XYXY boxes: (4,) or (1, 4); Bx4 when ``batched``. Requires x1>=x0, y1>=y0."""
    if box is None:
        return None
    arr = _finite_array(box, name)
    if batched:
        if arr.ndim == 1 and arr.shape[0] == 4:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(f"{name} must have shape Bx4 (XYXY), got {arr.shape}")
    elif arr.shape not in ((4,), (1, 4)):
        raise ValueError(f"{name} must have shape (4,) XYXY, got {arr.shape}")
    flat = arr.reshape(-1, 4)
    bad = (flat[:, 2] < flat[:, 0]) | (flat[:, 3] < flat[:, 1])
    if bad.any():
        raise ValueError(
            f"{name} must be XYXY with x1 >= x0 and y1 >= y0, got {flat[bad][0].tolist()}"
        )
    return arr


def check_mask_input(mask_input: Any, size: int, batched: bool = False) -> np.ndarray | None:
    """Validate low-res mask logits: 1xSxS (BxSxS... as Bx1xSxS when ``batched``)."""
    if mask_input is None:
        return None
    arr = _finite_array(mask_input, "mask_input", np.float32)
    want = (1, size, size)
    if batched:
        if arr.ndim != 4 or arr.shape[1:] != want:
            raise ValueError(f"mask_input must have shape Bx1x{size}x{size}, got {arr.shape}")
    elif arr.shape != want:
        raise ValueError(
            f"mask_input must have shape 1x{size}x{size} (a low_res_logits entry), got {arr.shape}"
        )
    return arr
