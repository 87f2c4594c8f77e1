"""Model configs, the model registry and the builders.

A config only holds architecture numbers; :func:`build_model` turns one into a
``Sam`` and optionally loads a checkpoint. ``sam_model_registry`` keeps the
segment-anything calling convention (``sam_model_registry["vit_t"](checkpoint=...)``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TinyViT,
    TwoWayTransformer,
)


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


def build_image_encoder(config: SamConfig) -> nn.Module:
    """The encoder alone (what distillation trains)."""
    enc = config.encoder
    if isinstance(enc, TinyViTConfig):
        return TinyViT(
            img_size=config.image_size,
            embed_dims=enc.embed_dims,
            depths=enc.depths,
            num_heads=enc.num_heads,
            window_sizes=enc.window_sizes,
            mlp_ratio=enc.mlp_ratio,
            mbconv_expand_ratio=enc.mbconv_expand_ratio,
            local_conv_size=enc.local_conv_size,
            drop_path_rate=enc.drop_path_rate,
            out_chans=config.prompt_embed_dim,
        )
    return ImageEncoderViT(
        img_size=config.image_size,
        patch_size=enc.patch_size,
        embed_dim=enc.embed_dim,
        depth=enc.depth,
        num_heads=enc.num_heads,
        mlp_ratio=enc.mlp_ratio,
        out_chans=config.prompt_embed_dim,
        window_size=enc.window_size,
        global_attn_indexes=enc.global_attn_indexes,
    )


def build_sam(config: SamConfig) -> Sam:
    """A randomly initialised ``Sam`` for ``config`` (in eval mode)."""
    dim = config.prompt_embed_dim
    grid = config.embedding_size
    sam = Sam(
        image_encoder=build_image_encoder(config),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=dim,
                num_heads=config.decoder_heads,
                mlp_dim=config.decoder_mlp_dim,
            ),
            num_multimask_outputs=config.num_multimask_outputs,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=config.pixel_mean,
        pixel_std=config.pixel_std,
    )
    sam.config = config  # type: ignore[assignment]
    return sam.eval()


def build_model(
    name: str | SamConfig | None = None,
    checkpoint: str | Path | None = None,
    **overrides: Any,
) -> Sam:
    """Build a registered model (or a config), optionally loading a checkpoint.

    With ``name=None`` the config is read from the checkpoint (files saved by
    :func:`mobilesam.checkpoint.save_checkpoint` carry it). ``overrides`` change
    config fields, e.g. ``image_size=256``. The model is returned in eval mode.
    """
    from .checkpoint import load_checkpoint, read_config

    if name is None:
        if checkpoint is None:
            raise ValueError("build_model needs a model name or a checkpoint that names its config")
        config = read_config(checkpoint)
        if config is None:
            raise ValueError(
                f"{checkpoint}: the file does not record its model config; pass the model name"
            )
    elif isinstance(name, SamConfig):
        config = name
    else:
        config = get_config(name)
    if overrides:
        config = config.replace(**overrides)
    model = build_sam(config)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_table(model: Sam) -> dict[str, int]:
    """Parameters per component; ``image_encoder_forward`` excludes TinyViT's unused head."""
    enc = model.image_encoder
    head = 0
    for name in ("norm_head", "head"):
        if hasattr(enc, name):
            head += count_parameters(getattr(enc, name))
    table = {
        "image_encoder": count_parameters(enc),
        "image_encoder_forward": count_parameters(enc) - head,
        "prompt_encoder": count_parameters(model.prompt_encoder),
        "mask_decoder": count_parameters(model.mask_decoder),
    }
    table["total"] = table["image_encoder"] + table["prompt_encoder"] + table["mask_decoder"]
    table["total_forward"] = table["total"] - head
    return table


class _Registry(Mapping[str, Callable[..., Sam]]):
    """Read-only ``name -> builder(checkpoint=None)`` view, as in segment-anything."""

    def __getitem__(self, name: str) -> Callable[..., Sam]:
        get_config(name)  # raise a helpful KeyError early

        def builder(checkpoint: str | Path | None = None, **overrides: Any) -> Sam:
            return build_model(name, checkpoint, **overrides)

        builder.__name__ = f"build_sam_{name}"
        return builder

    def __iter__(self) -> Iterator[str]:
        return iter(list_models())

    def __len__(self) -> int:
        return len(_CONFIGS)


sam_model_registry: Mapping[str, Callable[..., Sam]] = _Registry()
