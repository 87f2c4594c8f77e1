"""Resource limits of the segmentation service."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request (and the whole cache) may cost.

    max_upload_bytes: largest request body (the image file, or a JSON prompt).
    max_pixels: largest decoded image, width * height; checked from the file
        header before any pixel is decoded, so decompression bombs are refused.
    cache_bytes: memory for cached images and their embeddings (LRU); the most
        recent image is always kept, even if it alone is larger.
    max_points: most prompt points in one request.
    max_points_per_side: largest segment-everything grid (cost grows with its square).
    everything_results_per_image: segment-everything results kept per image.
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    cache_bytes: int = 1024 * 1024 * 1024
    max_points: int = 64
    max_points_per_side: int = 64
    everything_results_per_image: int = 4

    def __post_init__(self) -> None:
        for name in (
            "max_upload_bytes",
            "max_pixels",
            "cache_bytes",
            "max_points",
            "max_points_per_side",
            "everything_results_per_image",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ServeLimits.{name} must be a positive integer, got {value!r}")
