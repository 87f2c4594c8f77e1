"""Resumable training state: atomic checkpoint files and RNG capture.

A checkpoint holds everything an interrupted run needs to continue bit for bit:
model, optimizer, scheduler and grad-scaler states, every rank's RNG states
and the step count (the data position is a function of the step, see
:class:`~mobilesam.distill.data.StepBatchSampler`). It is written to a temporary
file (:func:`mobilesam.io.atomic_write`), fsynced and renamed, so a kill or a
power cut at any moment leaves either the old or the new checkpoint, never a
torn one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_write

CHECKPOINT = "checkpoint.pt"


def capture_rng() -> dict[str, Any]:
    """This process's RNG states (torch CPU/CUDA, numpy, random) as plain tensors/ints."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``.

    The fsync comes before the rename: the new name never points at data that
    is not on disk yet.
    """
    path = Path(path)
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_state` (tensors and plain values only)."""
    return torch.load(str(path), map_location="cpu", weights_only=True)
