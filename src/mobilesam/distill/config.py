"""Typed configs for the teacher cache and the student trainer.

Every field carries its help text in ``metadata``; :func:`add_config_arguments`
turns a config dataclass into argparse flags (``batch_size`` -> ``--batch-size``)
and :func:`config_from_args` reads them back, so the CLI never retypes options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class CacheConfig:
    """Computing the teacher's image embeddings once (``mobilesam distill cache``)."""

    images: str = _f("", "image source: folder tree, SA-1B folder or list file", required=True)
    out: str = _f("", "cache folder (created; re-run the same command to resume)", required=True)
    teacher: str = _f("vit_h", "registered teacher model name")
    teacher_checkpoint: str | None = _f(None, "teacher weights (.pth/.pt/.safetensors)")
    image_size: int | None = _f(None, "encoder input side (default: the teacher's, 1024)")
    source_kind: str = _f("auto", "how to read --images: auto, folder, sa1b or list")
    batch_size: int = _f(8, "images per teacher forward pass")
    shard_size: int = _f(256, "images per shard file (the unit of resume and of checksums)")
    precision: str = _f("fp32", "teacher compute: fp32, bf16 or fp16 (bf16/fp16 on GPU only)")
    device: str = _f("auto", "torch device; auto = this rank's GPU if present, else cpu")
    num_workers: int = _f(4, "image decoding worker processes")
    verify: bool = _f(True, "re-hash existing shards on resume (detects silent corruption)")


@dataclass
class DistillConfig:
    """Training a student image encoder on teacher embeddings (``mobilesam distill train``).

    Sizes are per process: the global batch is ``batch_size * grad_accum * world_size``.
    ``steps`` > 0 overrides ``epochs``. The optimiser is AdamW with a linear warm-up of
    ``warmup`` steps and a cosine decay from ``lr`` to ``min_lr`` at the last step.
    """

    out: str = _f("", "run folder (checkpoints, metrics, final student)", required=True)
    cache: str | None = _f(None, "teacher-embedding cache; without it the teacher runs online")
    images: str | None = _f(None, "online mode: image source (folder, SA-1B folder, list)")
    images_root: str | None = _f(None, "folder holding the cached images if they moved")
    teacher: str = _f("vit_h", "online mode: registered teacher model name")
    teacher_checkpoint: str | None = _f(None, "online mode: teacher weights")
    image_size: int | None = _f(None, "online mode: input side (default: the teacher's)")
    student: str = _f("vit_t", "student encoder from the student registry (see --list-students)")
    student_init: str | None = _f(None, "start from these student encoder weights")
    epochs: int = _f(8, "passes over the training images (ignored if --steps > 0)")
    steps: int = _f(0, "optimizer steps (0: use --epochs)")
    batch_size: int = _f(8, "images per process per micro-batch")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    lr: float = _f(1e-3, "peak learning rate (after warm-up)")
    min_lr: float = _f(1e-6, "learning rate at the last step (cosine decay)")
    weight_decay: float = _f(0.05, "AdamW weight decay (not applied to norms and biases)")
    warmup: int = _f(1000, "linear warm-up steps (capped at a tenth of the run)")
    grad_clip: float = _f(1.0, "clip the gradient norm to this (0: no clipping)")
    precision: str = _f("auto", "auto (bf16 on GPU if supported, fp16 otherwise; fp32 on CPU)")
    seed: int = _f(0, "seed for initialisation, data order and held-out split")
    holdout: int = _f(64, "images held out for the embedding cosine/MSE evaluation")
    eval_every: int = _f(500, "evaluate on the held-out images every N steps (0: only at end)")
    log_every: int = _f(20, "write a metrics line every N steps")
    checkpoint_every: int = _f(500, "write the resumable checkpoint every N steps")
    num_workers: int = _f(4, "image decoding worker processes per rank")
    device: str = _f("auto", "torch device; auto = this rank's GPU if present, else cpu")
    verify_cache: bool = _f(True, "check each cached embedding's checksum when read")
    resume: bool = _f(False, "continue from the run folder's checkpoint (fresh start if none)")

    # Fields that change the result: a resumed run must agree on them.
    RESULT_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "cache", "images", "teacher", "image_size", "student", "student_init", "epochs",
        "steps", "batch_size", "grad_accum", "lr", "min_lr", "weight_decay", "warmup",
        "grad_clip", "precision", "seed", "holdout",
    )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of an annotation like ``int | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = ()
) -> None:
    """Add one ``--flag`` per field of the dataclass ``cls`` (booleans get ``--no-flag``)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, _ = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        required = bool(f.metadata.get("required"))
        if tp is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                help=help_text,
            )  # fmt: skip
            continue
        shown = "" if required else f" (default {f.default})"
        parser.add_argument(
            flag, dest=f.name, type=tp, default=None if required else f.default,
            required=required, help=help_text + shown,
        )  # fmt: skip


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Build ``cls`` from parsed arguments (fields absent from ``args`` keep defaults)."""
    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)
    }
    return cls(**values)
