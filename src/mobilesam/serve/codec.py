"""Bytes in and out of the service: uploaded images, mask PNGs, RLEs, embeddings.

Uploads are decoded by :func:`mobilesam.io.decode_image` (the package's one
decoder: pixel count checked from the header, so a small file that would
expand into gigabytes is refused undecoded); :func:`decode_upload` only turns
its :class:`~mobilesam.io.ImageReadError` into the HTTP error the API promises.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from ..io import ImageReadError, decode_image
from .errors import ServeError

#: ``ImageReadError.reason`` -> (HTTP status, error code); any other reason is a 400 bad_image.
UPLOAD_ERRORS: dict[str, tuple[int, str]] = {
    "empty": (400, "empty_upload"),
    "not_an_image": (400, "not_an_image"),
    "too_many_pixels": (413, "image_too_large"),
}


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """Uploaded file bytes -> HxWx3 uint8 RGB, EXIF orientation applied (as browsers show it).

    Raises ``ServeError`` 400 (empty, not an image, truncated, unsupported
    format) or 413 (more than ``max_pixels`` pixels).
    """
    try:
        return decode_image(data, max_pixels)
    except ImageReadError as e:
        status, code = UPLOAD_ERRORS.get(e.reason, (400, "bad_image"))
        raise ServeError(status, code, str(e)) from None


def mask_to_png(mask: np.ndarray) -> bytes:
    """HxW bool mask -> 1-bit grayscale PNG bytes (white inside the mask).

    Readers expand it to 0/255 (OpenCV, browsers) or to bool (Pillow). Written
    by OpenCV at zlib level 1: 2-3x faster than Pillow's 1-bit writer, and
    without the interpreter lock, so other requests run meanwhile.
    """
    import cv2

    gray = np.ascontiguousarray(mask, dtype=bool).view(np.uint8) * np.uint8(255)
    params = [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, data = cv2.imencode(".png", gray, params)
    if not ok:
        raise RuntimeError("OpenCV could not encode the mask as PNG")
    return data.tobytes()


def mask_to_rle(mask: np.ndarray) -> dict:
    """HxW bool mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}``.

    The same encoding as pycocotools (``mask_utils.encode`` with counts decoded
    to text), so ``pycocotools.mask.decode`` reads it back.
    """
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_bbox(mask: np.ndarray) -> list[int]:
    """Tight XYWH box of a bool mask in pixels ([0, 0, 0, 0] when empty)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_mask_input(value: str | list, size: int) -> np.ndarray:
    """A prompt's ``mask_input`` as a float32 array.

    ``value`` is base64 of 1xSxS little-endian float32 (``S = size``), or nested
    lists (converted as they are). Only decoding happens here (``ServeError``
    400 if it fails); shape and finiteness are the predictor's to check.
    """
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise ServeError(400, "bad_prompt", "mask_input is not valid base64") from None
        want = size * size * 4
        if len(raw) != want:
            raise ServeError(
                400,
                "bad_prompt",
                f"mask_input must hold {want} bytes (float32 1x{size}x{size}), got {len(raw)}",
            )
        return np.frombuffer(raw, dtype="<f4").reshape(1, size, size).astype(np.float32)
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):  # ragged, not numbers, beyond float range
        raise ServeError(400, "bad_prompt", "mask_input must be nested lists of numbers") from None


def array_to_npy(arr: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes (header with dtype and shape, then the data)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
