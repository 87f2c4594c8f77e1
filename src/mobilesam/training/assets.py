"""The shipped shapes-world models: half-precision files, loaded back in float32.

``src/mobilesam/assets/`` holds ``shapes_teacher.safetensors`` and
``shapes_student.safetensors`` (float16 tensors plus the recorded config, written by
:func:`save_fp16`) and ``shapes_models.json`` (recipe, parameters and the documented
held-out mIoU, read by the tests). :func:`load_shipped` builds the float32 model from
one of them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..modeling import Sam

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SHIPPED = ("shapes_teacher", "shapes_student")
RECIPE_FILE = "shapes_models.json"


def save_fp16(model: Sam, path: str | Path) -> Path:
    """Write ``model`` (with its config) as float16 safetensors; ``model`` is unchanged.

    Integer buffers stay as they are; only floating tensors are halved.
    """
    from ..checkpoint import save_checkpoint

    half = copy.deepcopy(model).cpu()
    for t in list(half.parameters()) + list(half.buffers()):
        if t.is_floating_point():
            t.data = t.data.to(torch.float16)
    save_checkpoint(half, path, model.config)  # type: ignore[arg-type]
    return Path(path)


def shipped_checkpoint(name: str) -> Path:
    """Path of a shipped model file (``shapes_teacher`` or ``shapes_student``)."""
    if name not in SHIPPED:
        raise KeyError(f"unknown shipped model {name!r}; shipped: {', '.join(SHIPPED)}")
    path = ASSETS / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not present (regenerate with scripts/shapes_world.py)")
    return path


def load_shipped(name: str, device: str | torch.device = "cpu") -> Sam:
    """A shipped model in float32, eval mode.

    Loaded by :func:`mobilesam.loading.load_model`: the model is built in float32
    from the recorded config and the float16 tensors are copied into it.
    """
    from ..loading import load_model

    return load_model(None, shipped_checkpoint(name), device=device)
