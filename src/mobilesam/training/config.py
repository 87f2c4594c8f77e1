"""Typed config of a SAM training run (teacher from scratch, or a coupled student)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

TRAINABLE = ("all", "image_encoder", "mask_decoder", "iou_head")


@dataclass
class SamTrainConfig:
    """SAM's recipe at small scale on shapes scenes.

    Each step renders ``batch_size`` training scenes, samples ``prompts_per_image``
    objects per scene, prompts a ``box_fraction`` of them with a jittered box and the rest
    with one point inside the mask, then runs ``correction_rounds`` more decoder passes,
    each adding a click in the previous error region and feeding the previous low-res
    logits as the mask prompt. Loss: ``focal_weight`` * focal (exponent ``focal_gamma``, foreground
    weight ``focal_alpha``) +
    ``dice_weight`` * dice on the best of the three multimask outputs (single-point round)
    or on the single output (box and multi-click rounds), plus ``iou_weight`` * MSE of the
    IoU prediction, with logits upsampled to the input size. AdamW with linear warm-up and
    cosine decay.

    ``trainable``: ``all`` (teacher, or coupled student with a decoder trained jointly
    from scratch), ``image_encoder`` (coupled student under a frozen decoder),
    ``mask_decoder`` (fine-tuning the decoder of a distilled student, encoders frozen) or
    ``iou_head`` (only the MLP that scores the masks from the IoU token's output: the masks
    stay exactly as they were, their predicted IoUs, and so the choice among them, improve).
    ``init``: a model file the run starts from (empty: the model as given; a model trained
    at a smaller input size starts with its ViT position tables resized); recorded, so a
    resumed run cannot start from other weights.
    ``train_scenes`` > 0 draws from the first ``train_scenes`` training seeds only (a
    fixed data set); 0 draws fresh scenes every step. ``checkpoint_every``: steps between
    resumable checkpoints (0: only at the end or when the time budget is spent).
    ``render_workers``: 0 renders the next step's scenes in a helper thread; N > 0 renders
    N steps ahead in N processes (for a GPU, which would otherwise wait for the CPU). The
    scenes are the same either way: they depend on (seed, step) only.
    """

    # settings a resumed run may change (they do not touch the optimisation)
    RESUME_FREE: ClassVar[frozenset[str]] = frozenset(
        {"out", "threads", "device", "log_every", "eval_every", "checkpoint_every",
         "render_workers"}
    )  # fmt: skip

    out: str
    steps: int = 3000
    batch_size: int = 8
    prompts_per_image: int = 4
    box_fraction: float = 0.5
    correction_rounds: int = 1
    lr: float = 8e-4
    min_lr: float = 1e-5
    warmup: int = 150
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    focal_weight: float = 20.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    max_box_jitter: float = 5.0
    trainable: str = "all"
    init: str = ""
    train_scenes: int = 0
    seed: int = 0
    eval_every: int = 250
    eval_scenes: int = 32
    log_every: int = 10
    device: str = "cpu"
    threads: int = 0
    checkpoint_every: int = 100
    render_workers: int = 0

    def __post_init__(self) -> None:
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.steps < 1 or self.batch_size < 1 or self.prompts_per_image < 1:
            raise ValueError("steps, batch_size and prompts_per_image must be positive")
        if not 0.0 <= self.box_fraction <= 1.0:
            raise ValueError(f"box_fraction must be in [0, 1], got {self.box_fraction}")
        if self.correction_rounds < 0:
            raise ValueError("correction_rounds must be >= 0")
        if self.render_workers < 0:
            raise ValueError(f"render_workers must be >= 0, got {self.render_workers}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
