"""Decoupled distillation: train a light image encoder on a SAM teacher's embeddings.

Modules: ``sources`` (image sources), ``cache`` (the teacher-embedding cache on
disk: ``build_cache`` writes it, ``TeacherEmbeddingStore`` reads it),
``data`` (datasets, shared preprocessing, step-indexed sampler), ``students``
(student encoder registry), ``config`` (typed configs), ``train`` (the trainer),
``assemble`` (student + teacher prompt encoder/mask decoder -> one checkpoint),
``report`` (metrics log, summary, curves). Names below are imported lazily.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_LAZY = {
    "ImageSource": "sources",
    "open_source": "sources",
    "load_rgb": "sources",
    "BadImageError": "sources",
    "build_cache": "cache",
    "TeacherEmbeddingStore": "cache",
    "CacheError": "cache",
    "CacheConfig": "config",
    "DistillConfig": "config",
    "Distiller": "train",
    "TrainResult": "train",
    "distill": "train",
    "register_student": "students",
    "list_students": "students",
    "student_model_config": "students",
    "load_teacher": "teacher",
    "assemble": "assemble",
    "summarize": "report",
    "plot_curves": "report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name == "EmbeddingCache":  # renamed: the name belongs to mobilesam.inference.cache
        warnings.warn(
            "mobilesam.distill.EmbeddingCache is now TeacherEmbeddingStore",
            DeprecationWarning,
            stacklevel=2,
        )
        name = "TeacherEmbeddingStore"
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mobilesam.distill' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
