"""Model configs and the registry of model names (no torch, no builders).

A config only holds architecture numbers. ``register_config`` adds one under a
name (a name can be taken only once); :mod:`mobilesam.build` turns a config
into a ``Sam``. Keeping these apart from the builders lets the checkpoint
reader record and read configs without importing the builders.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TinyViTConfig:
    """TinyViT encoder numbers (MobileSAM's are the defaults)."""

    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    drop_path_rate: float = 0.0
    kind: str = "tiny_vit"


@dataclass(frozen=True)
class ViTConfig:
    """SAM ViT encoder numbers (ViT-B by default)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    patch_size: int = 16
    mlp_ratio: float = 4.0
    kind: str = "vit"
    stem: str = "patch"  # "patch" (SAM's, one strided convolution) or "conv" (3x3 convolutions)


@dataclass(frozen=True)
class SamConfig:
    """A whole model: encoder config plus prompt encoder / decoder numbers.

    ``image_size`` is the padded square input side; the embedding grid is
    ``image_size // 16``. The official models use 1024 (64x64 embeddings).
    """

    name: str
    encoder: TinyViTConfig | ViTConfig
    image_size: int = 1024
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    pixel_mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, ...] = (58.395, 57.12, 57.375)
    description: str = field(default="", compare=False)

    @property
    def embedding_size(self) -> int:
        return self.image_size // 16

    def replace(self, **changes: Any) -> SamConfig:
        """A copy with some fields changed (e.g. ``image_size=256``)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> SamConfig:
        d = json.loads(text)
        enc = d.pop("encoder")
        kind = enc.get("kind", "tiny_vit")
        enc = {k: tuple(v) if isinstance(v, list) else v for k, v in enc.items()}
        encoder = TinyViTConfig(**enc) if kind == "tiny_vit" else ViTConfig(**enc)
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return SamConfig(encoder=encoder, **d)


_CONFIGS: dict[str, SamConfig] = {}


def register_config(config: SamConfig, *aliases: str) -> SamConfig:
    """Add a model config under its name (and aliases); a name can be taken only once."""
    for name in (config.name, *aliases):
        if name in _CONFIGS:
            raise ValueError(f"model name {name!r} is already registered")
        _CONFIGS[name] = config
    return config


def get_config(name: str) -> SamConfig:
    """Registered config by name; the error lists the names that exist."""
    try:
        return _CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    return sorted(_CONFIGS)


register_config(
    SamConfig("vit_t", TinyViTConfig(), description="MobileSAM: TinyViT encoder (mobile_sam.pt)")
)
register_config(SamConfig("vit_b", ViTConfig(), description="SAM ViT-B (sam_vit_b_01ec64.pth)"))
register_config(
    SamConfig(
        "vit_l",
        ViTConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
        description="SAM ViT-L (sam_vit_l_0b3195.pth)",
    )
)
register_config(
    SamConfig(
        "vit_h",
        ViTConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
        description="SAM ViT-H (sam_vit_h_4b8939.pth)",
    ),
    "default",
)
