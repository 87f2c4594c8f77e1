"""Small model configs for the shapes world (256 px input, 16x16 embeddings).

Registered in :mod:`mobilesam.config`'s registry when this module is imported:

* ``shapes_teacher``: a 6-block ViT (width 192, 3 heads, windowed attention with
  three global blocks), prompt/decoder width 128, decoder MLP 512, 4 heads.
* ``shapes_student``: a small TinyViT (dims 32/48/64/96, depths 1/1/2/1) with the same
  prompt encoder and mask decoder numbers, so the teacher's decoder fits it.

The decoder is narrower than SAM's (128 vs 256 channels, MLP 512 vs 2048) because the
scenes are simple and the shipped weights must stay small.
"""

from __future__ import annotations

from ..config import SamConfig, TinyViTConfig, ViTConfig, get_config, list_models, register_config

IMAGE_SIZE = 256
_DECODER = dict(
    image_size=IMAGE_SIZE,
    prompt_embed_dim=128,
    decoder_mlp_dim=512,
    decoder_heads=4,
    iou_head_hidden_dim=128,
)

SHAPES_TEACHER = SamConfig(
    "shapes_teacher",
    ViTConfig(embed_dim=192, depth=6, num_heads=3, global_attn_indexes=(1, 3, 5), window_size=8),
    description="shapes-world teacher: small ViT at 256 px (trained from scratch)",
    **_DECODER,
)
SHAPES_STUDENT_ENCODER = TinyViTConfig(
    embed_dims=(32, 48, 64, 96), depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 3)
)
SHAPES_STUDENT = SHAPES_TEACHER.replace(
    name="shapes_student",
    encoder=SHAPES_STUDENT_ENCODER,
    description="shapes-world student: small TinyViT at 256 px (distilled)",
)

for _config in (SHAPES_TEACHER, SHAPES_STUDENT):
    # importing twice (e.g. module reloads in tests) must not trip the registry's duplicate check
    if _config.name not in list_models():
        register_config(_config)
    elif get_config(_config.name) != _config:
        raise RuntimeError(f"model name {_config.name!r} is registered with another config")
