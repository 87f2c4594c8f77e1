"""SAM's prompt encoder and mask decoder in numpy: a decoder backend with nothing to start.

Why it exists: in a one-click process (``mobilesam segment``) the decoder's runtime
cost more than the decoding. With onnxruntime, importing it, building the decoder's
session and its first call took ~0.15 s of a ~0.7 s process on a 2-core Xeon, and
OpenVINO compiling the small dynamic-shape graph was slower still. Here the weights
are one safetensors file (``decoder.safetensors``, written by
:func:`mobilesam.export.numpy_weights.save_decoder_weights`), loaded in milliseconds,
and the work is float32 matrix products (:mod:`.numpy_layers`). It is the same function
as :meth:`mobilesam.modeling.Sam.decode`, step for step, so its outputs agree with the
torch path to float32 rounding (tested).

Two things keep it fast: the attention between the few prompt tokens and the 4096 image
tokens projects the tokens, not the image (see :class:`.numpy_layers.Attention`), which
halves the products and the memory traffic; and the upscaling network runs in blocks of
image rows with its sub-pixels left in place (a transposed convolution of stride 2 turns
each pixel into a 2x2 block, and everything after it is per pixel), so its 2M-value
activations never exist whole and only the returned masks are put in raster order, once,
at the end.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.core import DecodeRequest
from ..inference.upscale import mask_map, upscale_numpy
from .numpy_layers import F32, MLP, Attention, Norm, TwoWayLayer, gelu

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]
META_KEY = "mobilesam.decoder"  # the weights file's metadata entry (mobilesam.export.numpy_weights)


class NumpyDecoder:
    """Decoder backend (see :class:`mobilesam.inference.core.DecoderBackend`) on numpy.

    ``weights``: the ``prompt_encoder.*`` and ``mask_decoder.*`` tensors of a ``Sam``
    state dict and ``dense_pe`` (g*g x C); ``meta``: ``image_size``, ``embedding_size``, ``heads``,
    ``mask_threshold`` (what :func:`~mobilesam.export.numpy_weights.save_decoder_weights`
    records). One instance may serve many images and threads: decoding keeps no state.
    """

    block_rows = 4  # image-embedding rows per block of the upscaling network

    def __init__(self, weights: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        p = {k: np.asarray(v, F32) for k, v in weights.items()}
        self.image_size = int(meta["image_size"])
        self.grid = int(meta["embedding_size"])
        self.mask_input_size = 4 * self.grid
        self.mask_threshold = float(meta.get("mask_threshold", 0.0))
        heads = int(meta["heads"])
        pe, md = "prompt_encoder", "mask_decoder"
        self.gauss = p[f"{pe}.pe_layer.positional_encoding_gaussian_matrix"]
        self.point_embed = [p[f"{pe}.point_embeddings.{i}.weight"][0] for i in range(4)]
        self.not_a_point = p[f"{pe}.not_a_point_embed.weight"][0]
        self.no_mask = p[f"{pe}.no_mask_embed.weight"][0]
        down = f"{pe}.mask_downscaling"
        self.mask_convs = [(p[f"{down}.{i}.weight"], p[f"{down}.{i}.bias"]) for i in (0, 3, 6)]
        self.mask_norms = [Norm(p, f"{down}.{i}", 1e-6) for i in (1, 4)]
        tokens = [p[f"{md}.iou_token.weight"], p[f"{md}.mask_tokens.weight"]]
        self.out_tokens = np.concatenate(tokens, axis=0)
        self.num_mask_tokens = self.out_tokens.shape[0] - 1
        tf = f"{md}.transformer"
        depth = 0
        while f"{tf}.layers.{depth}.norm1.weight" in p:
            depth += 1
        self.layers = [TwoWayLayer(p, f"{tf}.layers.{i}", heads, i == 0) for i in range(depth)]
        self.final_attn = Attention(p, f"{tf}.final_attn_token_to_image", heads)
        self.final_norm = Norm(p, f"{tf}.norm_final_attn", 1e-5)
        # The transposed convolutions (in x out x 2 x 2) as in x (2*2*out) products.
        up = f"{md}.output_upscaling"
        self.up1 = _subpixel(p[f"{up}.0.weight"], p[f"{up}.0.bias"])
        self.up_norm = Norm(p, f"{up}.1", 1e-6)
        self.up2 = _subpixel(p[f"{up}.3.weight"], p[f"{up}.3.bias"])
        self.hypernets = [
            MLP(p, f"{md}.output_hypernetworks_mlps.{k}") for k in range(self.num_mask_tokens)
        ]
        self.iou_head = MLP(p, f"{md}.iou_prediction_head")
        self.dense_pe = p["dense_pe"]  # (grid*grid) x C, as the model computed it

    @classmethod
    def from_file(cls, path: str | Path) -> NumpyDecoder:
        """Load ``decoder.safetensors`` (see :mod:`mobilesam.export.numpy_weights`)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"decoder weights not found: {path}")
        with safe_open(str(path), framework="numpy") as f:
            meta = (f.metadata() or {}).get(META_KEY)
            if meta is None:
                raise ValueError(f"{path} has no {META_KEY} metadata: not a decoder weights file")
            weights = {k: f.get_tensor(k) for k in f.keys()}
        return cls(weights, json.loads(meta))

    # ------------------------------------------------------------ prompt encoder
    def _point_pe(self, coords: np.ndarray) -> np.ndarray:
        """Random-Fourier encoding of pixel coordinates in the padded input (... x 2) -> ... x C."""
        unit = coords / F32(self.image_size)  # the padded input frame is square
        c = (F32(2.0) * unit - F32(1.0)) @ self.gauss
        c = F32(2.0 * math.pi) * c
        return np.concatenate([np.sin(c), np.cos(c)], axis=-1)

    def sparse(self, r: DecodeRequest, b: int) -> np.ndarray:
        """Point and box tokens, B x K x C (K may be 0)."""
        parts = []
        if r.coords is not None:
            coords = np.asarray(r.coords, F32) + F32(0.5)
            labels = np.asarray(r.labels, F32)
            if r.boxes is None:  # SAM appends a "not a point" without a box
                coords = np.concatenate([coords, np.zeros((b, 1, 2), F32)], axis=1)
                labels = np.concatenate([labels, -np.ones((b, 1), F32)], axis=1)
            emb = self._point_pe(coords)
            emb = np.where((labels == -1)[..., None], self.not_a_point, emb)
            emb = emb + (labels == 0)[..., None] * self.point_embed[0]
            emb = emb + (labels == 1)[..., None] * self.point_embed[1]
            parts.append(emb.astype(F32))
        if r.boxes is not None:
            corners = self._point_pe(np.asarray(r.boxes, F32).reshape(b, 2, 2) + F32(0.5))
            parts.append(np.stack([corners[:, 0] + self.point_embed[2],
                                   corners[:, 1] + self.point_embed[3]], axis=1))  # fmt: skip
        if not parts:
            return np.zeros((b, 0, self.out_tokens.shape[1]), F32)
        return np.concatenate(parts, axis=1)

    def dense(self, masks: np.ndarray) -> np.ndarray:
        """Low-res mask logits B x 1 x 4g x 4g -> B x g*g x C (channels last)."""
        b, s = masks.shape[0], masks.shape[-1]
        x = masks.reshape(b, s // 2, 2, s // 2, 2).transpose(0, 1, 3, 2, 4)
        x = x.reshape(b, s // 2, s // 2, 4)  # 2x2 patches, (kh, kw)
        for i in range(2):
            w, bias = self.mask_convs[i]  # out x in x 2 x 2
            x = x @ w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]) + bias
            x = gelu(self.mask_norms[i](x))
            if i == 0:  # the next 2x2 patches, (kh, kw, channel)
                h = x.shape[1] // 2
                x = x.reshape(b, h, 2, h, 2, -1).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, h, -1)
        w, bias = self.mask_convs[2]  # 1x1 convolution
        return (x.reshape(b, -1, x.shape[-1]) @ w[:, :, 0, 0].T + bias).astype(F32)

    # -------------------------------------------------------------- the decoder
    def prepare(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Per image: its tokens without a mask prompt, with and without the positions."""
        emb = np.asarray(features, F32)
        if emb.ndim != 4 or emb.shape[0] != 1 or emb.shape[2:] != (self.grid, self.grid):
            raise ValueError(f"expected a 1xCx{self.grid}x{self.grid} embedding, got {emb.shape}")
        image = np.ascontiguousarray(emb.reshape(emb.shape[1], -1).T)  # HW x C
        keys = image + self.no_mask
        return {"image": image, "keys": keys, "keys_pe": keys + self.dense_pe}

    def transformer(
        self, tokens: np.ndarray, keys: np.ndarray, keys_pe: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The two-way transformer: (tokens T x C, image tokens HW x C) after it."""
        queries, pe = tokens, self.dense_pe
        for i, layer in enumerate(self.layers):
            queries, keys = layer(queries, keys, tokens, pe, keys_pe if i == 0 else None)
        out = self.final_attn.tokens_to_image(queries + tokens, keys + pe, keys)
        return self.final_norm(queries + out), keys

    def upscale_masks(self, keys: np.ndarray, hyper: np.ndarray) -> np.ndarray:
        """Image tokens g*g x C and hypernetwork outputs K x C/8 -> K x 4g x 4g logits."""
        g, rows = self.grid, self.block_rows
        (w1, b1), (w2, b2) = self.up1, self.up2
        out = np.empty((g * g * 16, hyper.shape[0]), F32)
        for start in range(0, g, rows):
            stop = min(start + rows, g)
            x = keys[start * g : stop * g] @ w1 + b1  # n x (2*2*c1): each pixel's 2x2 block
            x = gelu(self.up_norm(x.reshape(-1, w1.shape[1] // 4)))
            x = gelu(x @ w2 + b2).reshape(-1, w2.shape[1] // 4)  # each sub-pixel's 2x2 block
            np.matmul(x, hyper.T, out=out[start * g * 16 : stop * g * 16])
        # rows 4i + 2di + ei, columns 4j + 2dj + ej from (i, j, di, dj, ei, ej)
        out = out.reshape(g, g, 2, 2, 2, 2, -1).transpose(6, 0, 2, 4, 1, 3, 5)
        return np.ascontiguousarray(out).reshape(-1, 4 * g, 4 * g)

    def decode(self, prepared: dict[str, Any], request: DecodeRequest) -> Prediction:
        """Masks B x C x H x W, IoU B x C, low-res logits B x C x 4g x 4g (C = 3 or 1)."""
        r = request
        if (r.coords is None) != (r.labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        b = r.num_sets
        sparse = self.sparse(r, b)
        tokens = np.concatenate(
            [np.broadcast_to(self.out_tokens, (b, *self.out_tokens.shape)), sparse], axis=1
        ).astype(F32)
        dense = None if r.mask_input is None else self.dense(np.asarray(r.mask_input, F32))
        ids = (1, 2, 3) if r.multimask_output else (0,)
        lows, ious = [], []
        for i in range(b):  # one prompt set at a time: the image tokens are large
            if dense is None:
                out, keys = self.transformer(tokens[i], prepared["keys"], prepared["keys_pe"])
            else:
                out, keys = self.transformer(tokens[i], prepared["image"] + dense[i])
            hyper = np.stack([self.hypernets[j](out[1 + j]) for j in ids])
            lows.append(self.upscale_masks(keys, hyper))
            ious.append(self.iou_head(out[0])[list(ids)])
        low = np.stack(lows)
        iou = np.stack(ious)
        masks = upscale_numpy(low, mask_map(low.shape[-2:], self.image_size, r.input_size,
                                            r.original_size))  # fmt: skip
        if not r.return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low


def _subpixel(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stride-2, 2x2 transposed convolution (in x out x 2 x 2) as an in x (2*2*out)
    product: each input pixel's 2x2 output block, (di, dj, channel) major to minor."""
    w = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return np.ascontiguousarray(w), np.tile(bias, 4)
