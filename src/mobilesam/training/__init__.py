"""Training SAM from scratch (kept apart from inference): prompts, losses, the trainer.

Importing :mod:`mobilesam.training.models` registers the shapes-world model configs.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SamTrainConfig": "config",
    "train_sam": "trainer",
    "TrainSummary": "trainer",
    "sam_mask_loss": "losses",
    "sigmoid_focal_loss": "losses",
    "dice_loss": "losses",
    "sample_points": "prompts",
    "jittered_boxes": "prompts",
    "correction_points": "prompts",
    "SHAPES_TEACHER": "models",
    "SHAPES_STUDENT": "models",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mobilesam.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
