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
from .fast_decoder import FastPointDecoder
from .optimize import OptimizeConfig, optimize_model
from .predictor import SamPredictor
from .torch_backend import TorchDecoder, TorchPrediction
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
        with torch.inference_mode():
            self.fast.set_embedding(features)
        return super().prepare(features)

    def decode_torch(
        self,
        prepared: Any,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        return_logits: bool,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> TorchPrediction:
        if mask_input is not None or (point_coords is None and boxes is None):
            return super().decode_torch(
                prepared,
                point_coords,
                point_labels,
                boxes,
                mask_input,
                multimask_output,
                return_logits,
                input_size,
                original_size,
            )
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        points = (point_coords, point_labels) if point_coords is not None else None
        with torch.inference_mode():
            sparse, _ = self.model.prompt_encoder(points=points, boxes=boxes, masks=None)
            ids = (1, 2, 3) if multimask_output else (0,)
            tokens, keys = self.fast.transformer(sparse, ids)  # final attention: needed rows only
            low_res = self.fast.masks(tokens, keys, ids)
            iou = self.fast.iou(tokens, multimask_output)
            masks = self.model.postprocess_masks(low_res, input_size, original_size)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low_res


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
