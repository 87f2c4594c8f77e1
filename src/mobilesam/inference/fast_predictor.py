"""FastPredictor: ``SamPredictor`` on an optimised model, a shared-embedding decoder and a cache.

    from mobilesam import FastPredictor
    predictor = FastPredictor(model)     # drop-in for SamPredictor, outputs within tolerance

- the model is an optimised copy (:func:`~.optimize.optimize_model`: folded
  BatchNorm, fused attention);
- ``set_image`` on an image seen before (same pixels and shape, after format
  conversion) reuses its embedding from the embedding cache;
- prompts without a mask input are decoded by :class:`FastTorchDecoder`, a
  decoder backend that computes the prompt-independent part of the decoder
  once per image and never copies the image embedding per prompt (the same
  function as :meth:`Sam.decode`, sums reordered); mask inputs take the exact one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..modeling import Sam
from .cache import EmbeddingCache, ImageEmbedding, image_digest
from .core import DecodeRequest
from .fast_decoder import FastPointDecoder
from .optimize import OptimizeConfig, optimize_model
from .predictor import SamPredictor
from .torch_backend import TorchDecoder, TorchPrediction
from .upscale import mask_map, upscale_torch
from .validation import as_rgb_uint8


class FastTorchDecoder(TorchDecoder):
    """Decoder backend: the shared-embedding decoder for points and boxes.

    One instance holds one image's precomputed state (set by ``prepare``), and
    must not decode from two threads at once (it reuses scratch buffers).
    """

    def __init__(self, model: Sam) -> None:
        super().__init__(model)
        self.fast = FastPointDecoder(model)

    def prepare(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = features.float()  # e.g. from an encoder run under autocast
        with torch.inference_mode(), _float32(features):
            self.fast.set_embedding(features)
        return super().prepare(features)

    def decode_torch(self, prepared: Any, request: DecodeRequest) -> TorchPrediction:
        # Always float32: the decoder's scratch buffers are, and a caller's autocast
        # (half-precision linear layers) would feed them another dtype.
        with _float32(prepared[0]):
            return self._decode_float32(prepared, request)

    def _decode_float32(self, prepared: Any, request: DecodeRequest) -> TorchPrediction:
        r = request
        if r.mask_input is not None or (r.coords is None and r.boxes is None):
            return super().decode_torch(prepared, request)
        if (r.coords is None) != (r.labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        points = (r.coords, r.labels) if r.coords is not None else None
        with torch.inference_mode():
            sparse, _ = self.model.prompt_encoder(points=points, boxes=r.boxes, masks=None)
            ids = (1, 2, 3) if r.multimask_output else (0,)
            tokens, keys = self.fast.transformer(sparse, ids)  # final attention: needed rows only
            low_res = self.fast.masks(tokens, keys, ids)
            iou = self.fast.iou(tokens, r.multimask_output)
            size = self.model.image_size
            shape = mask_map(low_res.shape[-2:], size, r.input_size, r.original_size)
            masks = upscale_torch(low_res, shape)  # one pass, no 1024x1024 intermediate
        if not r.return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low_res


def _float32(like: torch.Tensor) -> Any:
    """A context that turns off any autocast on ``like``'s device."""
    return torch.autocast(like.device.type, enabled=False)


class FastPredictor(SamPredictor):
    """``SamPredictor`` on an optimised copy of the model, with an embedding cache.

    ``cache_size`` bounds the cache in images; ``cache`` is the
    :class:`~.cache.EmbeddingCache` (hits / misses / stats).
    """

    def __init__(
        self,
        sam_model: Sam,
        config: OptimizeConfig | None = None,
        cache_size: int = 8,
        **kwargs: Any,
    ) -> None:
        model = optimize_model(sam_model, config)
        super().__init__(model, decoder=FastTorchDecoder(model), **kwargs)
        self.cache: EmbeddingCache[ImageEmbedding] = EmbeddingCache(max_items=cache_size)

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        rgb = as_rgb_uint8(image, image_format)
        key = image_digest(rgb)
        hit = self.cache.get(key)
        if hit is not None:
            self.set_embedding(hit.features, [hit.original_size], [hit.input_size])
            return
        with torch.inference_mode():
            super().set_image(rgb, "RGB")
        entry = ImageEmbedding(self.features, self.original_sizes[0], self.input_sizes[0])
        self.cache.put(key, entry)

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode():
            return super().predict(*args, **kwargs)
