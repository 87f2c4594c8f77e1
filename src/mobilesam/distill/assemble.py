"""Assembly: the trained student encoder plus the teacher's prompt encoder and mask decoder.

The result is one ``.safetensors`` that records its config, so
``build_model(checkpoint=path)`` loads it (and, for a ``vit_t`` student of a
standard SAM teacher, ``sam_model_registry["vit_t"](checkpoint=path)`` too) and
``SamPredictor`` uses it directly.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..build import SamConfig, build_sam
from ..checkpoint import CheckpointError, load_state_dict_strict, read_state_dict, save_checkpoint
from ..modeling import Sam

PARTS = ("prompt_encoder.", "mask_decoder.")


def student_config_of(run_dir: str | Path) -> SamConfig:
    """The whole-model config recorded in a run folder's ``run.json``."""
    info = Path(run_dir) / "run.json"
    if not info.is_file():
        raise FileNotFoundError(f"{run_dir}: not a distillation run folder (no run.json)")
    return SamConfig.from_json(json.loads(info.read_text())["student_config"])


def assemble(
    student: str | Path,
    teacher_checkpoint: str | Path,
    out: str | Path | None = None,
) -> Sam:
    """Build the distilled model; write it to ``out`` (``.safetensors``) when given.

    ``student`` is a run folder (its ``student_encoder.safetensors``) or an
    encoder weights file saved by the trainer. The teacher checkpoint only
    contributes its ``prompt_encoder.*`` and ``mask_decoder.*`` tensors, loaded
    strictly (any missing or mis-shaped key is an error).
    """
    from ..checkpoint import read_config

    student = Path(student)
    if student.is_dir():
        config = student_config_of(student)
        encoder_file = student / "student_encoder.safetensors"
        if not encoder_file.is_file():
            raise FileNotFoundError(
                f"{student}: training has not finished (no student_encoder.safetensors)"
            )
    else:
        encoder_file = student
        recorded = read_config(student)
        if recorded is None:
            raise CheckpointError(f"{student}: does not record its config; pass the run folder")
        config = recorded
    model = build_sam(config)
    try:
        load_state_dict_strict(model.image_encoder, read_state_dict(encoder_file))
    except CheckpointError as e:
        raise CheckpointError(f"{encoder_file}: {e}") from None
    teacher_sd = read_state_dict(teacher_checkpoint)
    for part in PARTS:
        sub = {k[len(part) :]: v for k, v in teacher_sd.items() if k.startswith(part)}
        if not sub:
            raise CheckpointError(f"{teacher_checkpoint}: has no {part}* weights")
        try:
            load_state_dict_strict(getattr(model, part.rstrip(".")), sub)
        except CheckpointError as e:
            raise CheckpointError(f"{teacher_checkpoint} ({part.rstrip('.')}): {e}") from None
    model.eval()
    if out is not None:
        save_checkpoint(model, out, config)
    return model
