"""Datasets the project makes itself (the synthetic shapes world)."""

from __future__ import annotations

from .shapes import (
    SPLITS,
    Scene,
    ShapesConfig,
    iter_scenes,
    render_scene,
    split_of,
    split_seeds,
    write_scenes,
)

__all__ = [
    "SPLITS",
    "Scene",
    "ShapesConfig",
    "iter_scenes",
    "render_scene",
    "split_of",
    "split_seeds",
    "write_scenes",
]
