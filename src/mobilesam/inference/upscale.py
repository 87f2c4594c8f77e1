"""SAM's mask upscaling as one separable map with a few taps per output pixel.

:meth:`~mobilesam.modeling.Sam.postprocess_masks` upsamples the low-res logits
bilinearly to the padded input size (256 -> 1024 for SAM), crops the padding and
resamples bilinearly to the original image size. Both steps are linear and act on
rows and columns separately, so the whole is ``out = A_rows @ low @ A_cols.T``, each
row of ``A`` holding at most four non-zero weights (two taps of the second step, each a
mix of two taps of the first). Here the columns go first, as a small dense product
(w x W), then each output row is a weighted sum of a few of those rows: the 1024x1024
intermediate never exists. For one click on a 534x800 photo the three masks take
~12 ms instead of ~32 ms (one thread).

The weights follow PyTorch's ``upsample_bilinear2d`` with ``align_corners=False``
and an explicit output size; they are composed in float64, so the result equals the
two-step reference up to float32 rounding of the sums (logits within ~1e-5; a mask
pixel can flip only where its logit is that close to the threshold).

The maps are numpy arrays cached per size (:func:`mask_map`); :func:`upscale_torch`
applies one. (A numpy version for the ONNX decoders was measured and dropped: in
onnxruntime the in-graph upscaling is a small part of a click, ~10 of ~120 ms on one
thread; the transformer is the rest.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

Taps = tuple[np.ndarray, np.ndarray]  # (index, weight): out_len x K int64 / float32


def bilinear_matrix(in_len: int, out_len: int) -> np.ndarray:
    """out_len x in_len float64 weights of 1-D bilinear resampling (align_corners=False).

    Source positions and weights are rounded to float32 as PyTorch's CPU kernel rounds
    them (scale = in / out in float32, src = scale * (dst + 0.5) - 0.5 rounded once,
    clamped at 0), so the weights are the reference's own, not merely close to them.
    """
    f32 = np.float32
    scale = np.float64(f32(in_len) / f32(out_len))
    # one rounding of scale * (dst + 0.5) - 0.5, as the kernel's fused multiply-add gives
    src = (scale * (np.arange(out_len) + 0.5) - 0.5).astype(f32)
    src = np.maximum(src, f32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_len - 1)
    i1 = np.minimum(i0 + 1, in_len - 1)
    lam = np.clip(src - i0.astype(f32), f32(0.0), f32(1.0))
    lam0 = (f32(1.0) - lam).astype(np.float64)
    lam = lam.astype(np.float64)
    m = np.zeros((out_len, in_len))
    rows = np.arange(out_len)
    np.add.at(m, (rows, i0), lam0)
    np.add.at(m, (rows, i1), lam)
    return m


@functools.lru_cache(maxsize=64)
def axis_map(low_len: int, padded_len: int, valid_len: int, out_len: int) -> np.ndarray:
    """out_len x low_len float64: low_len -> padded_len, keep the first valid_len, -> out_len."""
    if not 0 < valid_len <= padded_len:
        raise ValueError(f"valid length {valid_len} must be in (0, {padded_len}]")
    if out_len <= 0:
        raise ValueError(f"output length must be positive, got {out_len}")
    first = bilinear_matrix(low_len, padded_len)[:valid_len]
    composed = bilinear_matrix(valid_len, out_len) @ first
    composed.flags.writeable = False
    return composed


def row_taps(low_len: int, padded_len: int, valid_len: int, out_len: int) -> Taps:
    """The rows' map as taps: out_len x K source indices and float32 weights (K <= 4)."""
    composed = axis_map(low_len, padded_len, valid_len, out_len)
    k = max(1, int((composed != 0).sum(1).max()))
    order = np.argsort(composed == 0, axis=1, kind="stable")[:, :k]  # non-zeros first
    weight = np.take_along_axis(composed, order, axis=1)
    index = np.where(weight != 0, order, 0)
    weight = weight.astype(np.float32)
    index.flags.writeable = weight.flags.writeable = False
    return index, weight


def column_matrix(low_len: int, padded_len: int, valid_len: int, out_len: int) -> np.ndarray:
    """The columns' map as a dense low_len x out_len float32 matrix (right-multiplied)."""
    m = np.ascontiguousarray(axis_map(low_len, padded_len, valid_len, out_len).T, np.float32)
    m.flags.writeable = False
    return m


@dataclass(frozen=True)
class MaskMap:
    """SAM's postprocessing for one (low-res, input, original) size: row taps, column matrix."""

    rows: Taps
    columns: np.ndarray  # w x W

    @functools.cached_property
    def tensors(self) -> tuple[Any, Any, Any]:
        """(row index, row weights, column matrix) as CPU torch tensors, made once."""
        import torch

        index, weight = self.rows
        return tuple(torch.from_numpy(a.copy()) for a in (index, weight, self.columns))


def mask_map(
    low_size: tuple[int, ...],
    padded: int,
    input_size: tuple[int, ...],
    original_size: tuple[int, ...],
) -> MaskMap:
    """The map of :meth:`~mobilesam.modeling.Sam.postprocess_masks` for one image size.

    Sizes are (h, w): the low-res logits', the resized image's inside the ``padded``
    square, and the original image's. Cached per size.
    """
    return _mask_map(
        (int(low_size[0]), int(low_size[1])),
        int(padded),
        (int(input_size[0]), int(input_size[1])),
        (int(original_size[0]), int(original_size[1])),
    )


@functools.lru_cache(maxsize=32)
def _mask_map(low: tuple[int, int], padded: int, inp: tuple[int, int], orig: tuple[int, int]):
    rows = row_taps(low[0], padded, inp[0], orig[0])
    return MaskMap(rows, column_matrix(low[1], padded, inp[1], orig[1]))


def upscale_torch(low: Any, m: MaskMap) -> Any:
    """The same on a torch tensor (...x h x w float32) -> ...x H x W, on its device."""
    idx, w, columns = (t.to(low.device) for t in m.tensors)
    cols = low @ columns  # columns first: w x W is small
    out = cols.index_select(-2, idx[:, 0]) * w[:, 0, None]
    for k in range(1, idx.shape[1]):
        out.addcmul_(cols.index_select(-2, idx[:, k]), w[:, k, None])
    return out
