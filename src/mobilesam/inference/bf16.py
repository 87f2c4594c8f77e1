"""bfloat16 autocast variants of the torch backends (for CPUs with native bf16).

The networks' matrix products and convolutions run in bf16 under
``torch.autocast``; what leaves a backend is float32 again, so the predictor
core, caches and post-processing see the same dtypes as on the exact path.
Not exact: the embedding moves by ~1e-1 on values up to ~4, masks agree with
the float32 ones at IoU ~0.99 (see :mod:`mobilesam.backends.fidelity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .core import DecodeRequest
from .torch_backend import TorchDecoder, TorchEncoder, TorchPrediction


def _autocast() -> Any:
    return torch.autocast("cpu", dtype=torch.bfloat16)


class Bf16Encoder(TorchEncoder):
    """:class:`TorchEncoder` under bf16 autocast; embeddings come back float32."""

    @torch.no_grad()
    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        with _autocast():
            return super().encode_tensors(tensors).float()


class Bf16Decoder(TorchDecoder):
    """:class:`TorchDecoder` under bf16 autocast; logits and scores come back float32.

    (The shared-embedding ``FastTorchDecoder`` writes into float32 scratch
    buffers, which autocast cannot feed.)
    """

    def decode_torch(self, prepared: Any, request: DecodeRequest) -> TorchPrediction:
        with _autocast():
            masks, iou, low = super().decode_torch(prepared, request)
        if masks.dtype != torch.bool:
            masks = masks.float()
        return masks, iou.float(), low.float()
