"""Inference-only speed-ups of the PyTorch path that keep the outputs within tolerance.

    from mobilesam.inference.optimize import FastPredictor, optimize_model
    predictor = FastPredictor(model)          # optimised copy + image-embedding cache

:func:`optimize_model` returns an optimised *copy* (the original model is left
as it is, so it can still be trained or compared against):

- BatchNorm folded into the preceding convolution (TinyViT's ``Conv2dBN``),
  computed in float64 and rounded once;
- attention through ``F.scaled_dot_product_attention`` (fused kernel) in TinyViT
  (with its relative-position bias, gathered once) and in the two-way
  transformer;
- optionally channels-last memory format and ``torch.compile`` (inductor).

These compute the same functions in another order, so they stay within the
float32 parity tolerances (embedding 1.3e-5); ``torch.compile`` may fuse
further and is reported separately by the benchmark.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import Sam
from ..modeling import tiny_vit as tv
from ..modeling import transformer as tr
from .predictor import SamPredictor
from .validation import as_rgb_uint8


@dataclass(frozen=True)
class OptimizeConfig:
    """Which optimisations :func:`optimize_model` applies."""

    fold_batchnorm: bool = True
    fused_attention: bool = True
    channels_last: bool = False
    compile: bool = False
    num_threads: int | None = None


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d with bias equal to ``bn(conv(x))`` in eval mode (float64 fold)."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device)
    with torch.no_grad():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        bias = (bias - bn.running_mean.double()) * scale + bn.bias.double()
        fused.weight.copy_(weight.to(conv.weight.dtype))
        fused.bias.copy_(bias.to(conv.weight.dtype))
    return fused


def fold_batchnorm(module: nn.Module) -> int:
    """Replace every TinyViT ``Conv2dBN`` in ``module`` (in place); returns the count."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, tv.Conv2dBN):
                setattr(parent, name, fold_conv_bn(child.c, child.bn))
                count += 1
    return count


class _FusedTinyViTAttention(tv.Attention):
    """TinyViT window attention with SDPA; the bias is gathered once (inference only)."""

    fused_bias: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        qkv = self.qkv(x).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.head_dim] * 3, dim=3)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.fused_bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class _FusedDecoderAttention(tr.Attention):
    """The two-way transformer's attention with SDPA (same 1/sqrt(d) scale)."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._split(self.q_proj(q))
        k = self._split(self.k_proj(k))
        v = self._split(self.v_proj(v))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(q.shape[-1]))
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


def use_fused_attention(module: nn.Module) -> int:
    """Switch TinyViT and two-way-transformer attention to SDPA (in place); returns count."""
    count = 0
    for m in module.modules():
        if type(m) is tv.Attention:
            m.__class__ = _FusedTinyViTAttention
            bias = m.attention_biases[:, m.attention_bias_idxs].detach().clone()
            m.register_buffer("fused_bias", bias, persistent=False)
            count += 1
        elif type(m) is tr.Attention:
            m.__class__ = _FusedDecoderAttention
            count += 1
    return count


def set_threads(num_threads: int | None) -> int:
    """Set torch's intra-op threads (default: the usable cores); returns the value."""
    import os

    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    torch.set_num_threads(int(num_threads))
    return int(num_threads)


def optimize_model(model: Sam, config: OptimizeConfig | None = None) -> Sam:
    """An inference-only optimised copy of ``model`` (eval mode, no gradients)."""
    config = config or OptimizeConfig()
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    if config.fold_batchnorm:
        fold_batchnorm(fast.image_encoder)
    if config.fused_attention:
        use_fused_attention(fast)
    if config.channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if config.num_threads is not None:
        set_threads(config.num_threads)
    if config.compile:
        fast.image_encoder = torch.compile(fast.image_encoder, dynamic=False)
        fast.mask_decoder = torch.compile(fast.mask_decoder, dynamic=True)
    return fast


def image_key(image: np.ndarray) -> str:
    """Content hash of an HxWx3 uint8 image (shape included)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(image.shape).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class EmbeddingCache:
    """LRU cache ``image hash -> (embedding, original size, input size)``."""

    def __init__(self, max_items: int = 8) -> None:
        self.max_items = max(1, int(max_items))
        self._items: OrderedDict[str, tuple[torch.Tensor, tuple, tuple]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[torch.Tensor, tuple, tuple] | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item

    def put(self, key: str, value: tuple[torch.Tensor, tuple, tuple]) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class FastPredictor(SamPredictor):
    """``SamPredictor`` on an optimised copy of the model, with an embedding cache.

    - ``set_image`` on an image seen before (same pixels and shape, after format
      conversion) reuses its embedding instead of running the encoder again;
    - prompts without a mask input are decoded by
      :class:`~mobilesam.inference.fast_decoder.FastPointDecoder`, which computes
      the prompt-independent part of the decoder once per image and never copies
      the image embedding per prompt (the same function, sums reordered).
    """

    def __init__(
        self,
        sam_model: Sam,
        config: OptimizeConfig | None = None,
        cache_size: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(optimize_model(sam_model, config), **kwargs)
        self.cache = EmbeddingCache(cache_size)
        self._fast_decoder: Any = None
        self._fast_decoder_for: torch.Tensor | None = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        rgb = as_rgb_uint8(image, image_format)
        key = image_key(rgb)
        hit = self.cache.get(key)
        if hit is not None:
            features, original, input_size = hit
            self.set_embedding(features, [original], [input_size])
            return
        with torch.inference_mode():
            super().set_image(rgb, "RGB")
        assert self.features is not None
        self.cache.put(key, (self.features, self.original_sizes[0], self.input_sizes[0]))

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode():
            return super().predict(*args, **kwargs)

    def _point_decoder(self, index: int) -> Any:
        """The shared-embedding decoder for image ``index`` (set up once per embedding)."""
        from .fast_decoder import FastPointDecoder

        assert self.features is not None
        features = self.features[index : index + 1]
        if self._fast_decoder is None:
            self._fast_decoder = FastPointDecoder(self.model)
        stale = self._fast_decoder_for is None or not (
            self._fast_decoder_for.shape == features.shape
            and self._fast_decoder_for.data_ptr() == features.data_ptr()
        )
        if stale:
            self._fast_decoder.set_embedding(features)
            self._fast_decoder_for = features
        return self._fast_decoder

    def _decode(
        self,
        index: int,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        return_logits: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if mask_input is not None or (point_coords is None and boxes is None):
            return super()._decode(
                index,
                point_coords,
                point_labels,
                boxes,
                mask_input,
                multimask_output,
                return_logits,
            )
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, _ = self.model.prompt_encoder(points=points, boxes=boxes, masks=None)
        decoder = self._point_decoder(index)
        with torch.inference_mode():
            ids = (1, 2, 3) if multimask_output else (0,)
            tokens, keys = decoder.transformer(sparse, ids)  # final attention: needed rows only
            low_res = decoder.masks(tokens, keys, ids)
            iou = decoder.iou(tokens, multimask_output)
            masks = self.model.postprocess_masks(
                low_res, self.input_sizes[index], self.original_sizes[index]
            )
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res
