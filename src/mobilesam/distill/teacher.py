"""The teacher: any ``Sam`` whose image encoder produces the target embeddings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..modeling import Sam


def load_teacher(
    name: str | None,
    checkpoint: str | Path | None,
    image_size: int | None = None,
    device: torch.device | str = "cpu",
) -> Sam:
    """Build a frozen teacher: the config a mobilesam ``.safetensors`` records, else model
    ``name`` (through :func:`mobilesam.loading.load_model`).

    Without a checkpoint the teacher has random weights, which only makes sense
    in tests; the caller decides whether to allow that. The official weights are
    never downloaded here. Raises ``ModelLoadError`` (a ``ValueError``).
    """
    from ..loading import load_model

    overrides = {"image_size": image_size} if image_size else {}
    model = load_model(
        name,
        checkpoint or None,
        device=device,
        random_weights=not checkpoint,
        download=False,
        **overrides,
    )
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def teacher_embed(teacher: Sam, batch: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Teacher image embeddings: Bx3xSxS preprocessed -> BxCxGxG float32.

    ``precision`` bf16/fp16 runs the encoder under autocast (GPU only; on the
    CPU the teacher always runs in fp32).
    """
    if teacher.training:
        teacher.eval()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is not None and batch.device.type == "cuda":
        with torch.autocast("cuda", dtype=dtype):
            out = teacher.image_encoder(batch)
    else:
        out = teacher.image_encoder(batch)
    return out.float()


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the image encoder's weights (what the cached embeddings depend on)."""
    h = hashlib.sha256()
    encoder = getattr(model, "image_encoder", model)
    for key, value in sorted(encoder.state_dict().items()):
        h.update(key.encode())
        h.update(
            value.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return h.hexdigest()[:16]
