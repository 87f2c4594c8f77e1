"""Decoupled distillation: train a light image encoder on a SAM teacher's embeddings.

Modules: ``sources`` (image sources), ``cache`` (the teacher-embedding cache on
disk: ``build_cache`` writes it, ``TeacherEmbeddingStore`` reads it),
``data`` (datasets, shared preprocessing, step-indexed sampler), ``students``
(student encoder registry), ``config`` (typed configs), ``train`` (the trainer),
``assemble`` (student + teacher prompt encoder/mask decoder -> one checkpoint),
``report`` (metrics log, summary, curves). Names below are imported lazily.
"""

from __future__ import annotations

from ..lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
