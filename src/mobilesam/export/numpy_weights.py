"""``decoder.safetensors``: the prompt encoder's and mask decoder's weights for the numpy decoder.

:class:`mobilesam.runtime.numpy_decoder.NumpyDecoder` runs SAM's decoder from this file
alone (no torch, no graph runtime). It holds the ``prompt_encoder.*`` and
``mask_decoder.*`` tensors of the model's state dict, float32, under their own names;
``dense_pe``, the positional encoding of the embedding grid as the model computes it
(so the decoder neither recomputes it at load nor rounds it differently); and in the
header's metadata, under ``mobilesam.decoder``, a JSON object with what the weights'
shapes do not say (input size, embedding grid, attention heads, mask threshold).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ..io import atomic_path
from ..runtime.numpy_decoder import META_KEY

PREFIXES = ("prompt_encoder.", "mask_decoder.")


def decoder_meta(model: Any) -> dict[str, Any]:
    """What :class:`~mobilesam.runtime.numpy_decoder.NumpyDecoder` needs beside the weights."""
    pe = model.prompt_encoder
    return {
        "image_size": int(pe.input_image_size[0]),
        "embedding_size": int(pe.image_embedding_size[0]),
        "heads": int(model.mask_decoder.transformer.num_heads),
        "mask_threshold": float(model.mask_threshold),
    }


def save_decoder_weights(model: Any, path: str | os.PathLike) -> Path:
    """Write ``model``'s decoder weights to ``path`` (safetensors), atomically."""
    pe = model.prompt_encoder
    if pe.input_image_size[0] != pe.input_image_size[1]:
        raise ValueError(f"the numpy decoder needs a square input, got {pe.input_image_size}")
    arrays: dict[str, np.ndarray] = {
        name: tensor.detach().cpu().float().numpy()
        for name, tensor in model.state_dict().items()
        if name.startswith(PREFIXES)
    }
    dense_pe = pe.get_dense_pe()[0]  # C x g x g
    arrays["dense_pe"] = dense_pe.detach().cpu().float().numpy().reshape(dense_pe.shape[0], -1).T
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={META_KEY: json.dumps(decoder_meta(model))})
    return path
