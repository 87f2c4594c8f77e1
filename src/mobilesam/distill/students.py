"""Student image encoders by name, and the whole-model config a student gets.

A student is a TinyViT configuration. The whole model it becomes is the
teacher's config with the encoder swapped: same input size, pixel statistics,
prompt encoder and mask decoder numbers, so the teacher's prompt encoder and
mask decoder fit it unchanged.

Registered students (parameter counts of the encoder at 1024 px, forward path):

==============  ==================  ============  ==============  =========
name            embed dims          depths        heads           params
==============  ==================  ============  ==============  =========
vit_t_micro     32, 48, 64, 96      1, 1, 2, 1    1, 2, 2, 3      0.90M
vit_t_small     48, 96, 128, 256    2, 2, 4, 2    2, 3, 4, 8      3.47M
vit_t           64, 128, 160, 320   2, 2, 6, 2    2, 4, 5, 10     5.74M
vit_t_11m       64, 128, 256, 448   2, 2, 6, 2    2, 4, 8, 14     11.25M
vit_t_21m       96, 192, 384, 576   2, 2, 6, 2    3, 6, 12, 18    21.36M
==============  ==================  ============  ==============  =========

The last two follow TinyViT-11M/21M's widths with MobileSAM's stride-1 last
stage. ``vit_t`` is MobileSAM's encoder; ``vit_t_micro`` (mostly its 256-channel
neck) is for smoke tests and tiny experiments. ``mobilesam distill students``
prints the list with exact counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SamConfig, TinyViTConfig, ViTConfig


@dataclass(frozen=True)
class StudentSpec:
    name: str
    encoder: TinyViTConfig | ViTConfig
    description: str = ""


_STUDENTS: dict[str, StudentSpec] = {}


def register_student(
    name: str, encoder: TinyViTConfig | ViTConfig, description: str = ""
) -> StudentSpec:
    """Add a student encoder config under ``name`` (a name can be taken once)."""
    if name in _STUDENTS:
        raise ValueError(f"student {name!r} is already registered")
    spec = StudentSpec(name, encoder, description)
    _STUDENTS[name] = spec
    return spec


def get_student(name: str) -> StudentSpec:
    try:
        return _STUDENTS[name]
    except KeyError:
        raise KeyError(
            f"unknown student {name!r}; registered: {', '.join(list_students())}"
        ) from None


def list_students() -> list[str]:
    return sorted(_STUDENTS)


def student_model_config(student: str | TinyViTConfig | ViTConfig, teacher: SamConfig) -> SamConfig:
    """The whole-model config of ``student`` trained against ``teacher``.

    When the result equals a registered model's config (``vit_t`` against a
    default SAM teacher at 1024 px) it takes that name, so the assembled file
    also loads through ``sam_model_registry[name]``.
    """
    from ..config import get_config, list_models

    if isinstance(student, str):
        spec = get_student(student)
        encoder, name = spec.encoder, spec.name
    else:
        encoder, name = student, f"{student.kind}_student"
    config = teacher.replace(name=name, encoder=encoder, description=f"student {name}")
    for registered in list_models():
        if get_config(registered) == config.replace(name=registered):
            return config.replace(name=registered)
    return config


register_student("vit_t", TinyViTConfig(), "MobileSAM's TinyViT (5.7M)")
register_student(
    "vit_t_micro",
    TinyViTConfig(embed_dims=(32, 48, 64, 96), depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 3)),
    "smoke tests and tiny experiments",
)
register_student(
    "vit_t_small",
    TinyViTConfig(embed_dims=(48, 96, 128, 256), depths=(2, 2, 4, 2), num_heads=(2, 3, 4, 8)),
    "smaller and faster than vit_t",
)
register_student(
    "vit_t_11m",
    TinyViTConfig(embed_dims=(64, 128, 256, 448), num_heads=(2, 4, 8, 14)),
    "TinyViT-11M widths",
)
register_student(
    "vit_t_21m",
    TinyViTConfig(embed_dims=(96, 192, 384, 576), num_heads=(3, 6, 12, 18)),
    "TinyViT-21M widths",
)
