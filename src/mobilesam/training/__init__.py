"""Training SAM from scratch (kept apart from inference): prompts, losses, the trainer.

Importing :mod:`mobilesam.training.models` registers the shapes-world model configs.
"""

from __future__ import annotations

from ..lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
