"""Builders: a config -> a ``Sam``, optionally with weights; ``sam_model_registry``.

The configs and the name registry live in :mod:`mobilesam.config`;
:func:`build_model` turns one into a ``Sam`` and optionally loads a checkpoint
(:mod:`mobilesam.checkpoint`). ``sam_model_registry`` keeps the
segment-anything calling convention (``sam_model_registry["vit_t"](checkpoint=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import load_checkpoint, read_config
from .config import (
    SamConfig,
    TinyViTConfig,
    ViTConfig,
    get_config,
    list_models,
    register_config,
)
from .modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TinyViT,
    TwoWayTransformer,
)

__all__ = [
    "SamConfig",
    "TinyViTConfig",
    "ViTConfig",
    "build_image_encoder",
    "build_model",
    "build_sam",
    "count_parameters",
    "get_config",
    "list_models",
    "parameter_table",
    "register_config",
    "sam_model_registry",
]


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
        stem=enc.stem,
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
        return len(list_models())


sam_model_registry: Mapping[str, Callable[..., Sam]] = _Registry()
