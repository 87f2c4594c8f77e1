"""Per-prompt image tokens kept in low-rank form, and the decoder steps that act on them.

In SAM's two-way transformer every prompt changes the 4096 image tokens only through
attention outputs: a token-to-pixel weight map times a few token vectors. After a
LayerNorm the image tokens of prompt ``b`` can therefore be written as

    X[b, n] = scale[b, n] * S[n] + sum_j L[b, j, n] * R[b, j] + c

with ``S`` (N x C) and ``c`` shared by all prompts, a per-pixel ``scale`` (None
stands for ones) and ``J`` per-prompt rows (``J`` ~ 2 x heads x tokens, far below
N). Attention logits, attention outputs, the next LayerNorm's mean and variance
and the first upscaling convolution are all computed from this form: shared
products with ``S`` once per image, per-prompt products against ``J`` rows
instead of ``N x C`` tensors. Only sums are reordered, so results equal the
reference decoder's up to float32 rounding.

Large intermediates live in a :class:`Scratch` that is reused from call to call:
on this kind of workload, freshly allocated multi-megabyte tensors cost more in
page faults than the arithmetic done on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class Scratch:
    """Named reusable buffers (grown on demand, never shrunk)."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype
        self._bufs: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def __call__(self, name: str, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A contiguous tensor of ``shape`` (default dtype: the scratch's); contents undefined."""
        key = (name, dtype or self.dtype)
        n = math.prod(shape)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < n:
            buf = torch.empty(n, dtype=key[1])
            self._bufs[key] = buf
        return buf[:n].view(shape)

    def new_empty(self, *shape: int) -> torch.Tensor:
        """A fresh (not reused) tensor of the scratch's dtype."""
        return torch.empty(shape, dtype=self.dtype)


@dataclass
class LowRankTokens:
    """Per-prompt factors of the image tokens (see the module docstring)."""

    scale: torch.Tensor | None  # B x N, or None for ones
    L: torch.Tensor  # B x J x N
    R: torch.Tensor  # B x J x C

    def __getitem__(self, idx: torch.Tensor | slice) -> LowRankTokens:
        scale = None if self.scale is None else self.scale[idx]
        return LowRankTokens(scale, self.L[idx], self.R[idx])

    def __len__(self) -> int:
        return self.L.shape[0]

    def dense(self, shared: torch.Tensor, const: torch.Tensor) -> torch.Tensor:
        """The image tokens as a B x N x C tensor (for checks; the decoder never builds it)."""
        out = torch.bmm(self.L.transpose(1, 2), self.R) + const
        return out + (1.0 if self.scale is None else self.scale[..., None]) * shared


def split_heads_t(w: torch.Tensor, heads: int) -> torch.Tensor:
    """A projection of image tokens N x (H*dh) -> H x dh x N (for queries @ it)."""
    n = w.shape[0]
    return w.reshape(n, heads, -1).permute(1, 2, 0).contiguous()


def split_heads(w: torch.Tensor, heads: int) -> torch.Tensor:
    """A projection of image tokens N x (H*dh) -> H x N x dh (for weights @ it)."""
    n = w.shape[0]
    return w.reshape(n, heads, -1).transpose(0, 1).contiguous()


def shared_product(x: torch.Tensor, shared_t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out[b, h]`` (B x H x T x N) <- ``x[b, :, h] @ shared_t[h]``; x: B x T x H x dh.

    One batched matmul per prompt writes straight into the prompt-major layout the
    per-prompt products use (a head-major product would need a transposing copy).
    """
    xb = x.transpose(1, 2).contiguous()  # B x H x T x dh
    for i in range(out.shape[0]):
        torch.bmm(xb[i], shared_t, out=out[i])
    return out


def image_logits(
    qh: torch.Tensor,
    shared_t: torch.Tensor,
    offset_t: torch.Tensor,
    rows: torch.Tensor,
    state: LowRankTokens,
    ws: Scratch,
) -> torch.Tensor:
    """Attention logits between token vectors and projected image tokens.

    qh: B x T x H x dh, already scaled; shared_t / offset_t: H x dh x N, the shared
    matrix and the constant (+ positional encoding, + bias) after the projection;
    rows: B x J x H x dh, the per-prompt rows after the projection.
    Returns B x H x T x N (a scratch buffer):
    ``scale * qh.S' + qh.(L^T R') + qh.offset'``.
    """
    b, t, h, _ = qh.shape
    n = shared_t.shape[-1]
    m = torch.einsum("bjhd,bthd->bhtj", rows, qh).reshape(b, h * t, -1)
    out = shared_product(qh, shared_t, ws("logits", b, h, t, n, dtype=qh.dtype))
    if state.scale is not None:
        out.mul_(state.scale[:, None, None, :])
    out.view(b, h * t, n).baddbmm_(m, state.L)
    qb = qh.transpose(1, 2).contiguous()
    for i in range(b):
        out[i].baddbmm_(qb[i], offset_t)
    return out


def softmax(x: torch.Tensor, dim: int, ws: Scratch, name: str = "probs") -> torch.Tensor:
    """Softmax of ``x`` along ``dim`` into a scratch buffer of x's shape."""
    return torch.ops.aten._softmax.out(x, dim, False, out=ws(name, *x.shape, dtype=x.dtype))


def attend(
    weights: torch.Tensor,
    shared: torch.Tensor,
    rows: torch.Tensor,
    const: torch.Tensor,
    state: LowRankTokens,
    ws: Scratch,
) -> torch.Tensor:
    """Attention output of token queries over projected image-token values.

    weights: B x H x T x N, summing to one over N (overwritten); shared: H x N x dh,
    the shared matrix after the value projection; rows: B x J x H x dh, the
    per-prompt rows after it; const: H*dh, the constant after it plus the bias.
    Returns B x T x (H*dh), before the output projection.
    """
    b, h, t, n = weights.shape
    dh = shared.shape[-1]
    w = weights
    low = torch.bmm(w.view(b, h * t, n), state.L.transpose(1, 2)).view(b, h, t, -1)
    out = torch.einsum("bhtj,bjhd->bhtd", low, rows)
    if state.scale is not None:
        w.mul_(state.scale[:, None, None, :])
    for i in range(b):
        out[i].baddbmm_(w[i], shared)
    out += const.view(h, 1, dh)
    return out.transpose(1, 2).reshape(b, t, h * dh)


def normalised(
    scale: torch.Tensor | None,
    lw: torch.Tensor,
    rows: torch.Tensor,
    dots: torch.Tensor,
    shared_sq: torch.Tensor,
    norm: torch.nn.LayerNorm,
) -> LowRankTokens:
    """``norm(X)`` as a new low-rank state over ``S_c * norm.weight``, constant ``norm.bias``.

    X = the current image tokens plus attention updates, centred over channels, is
    written as ``scale * S_c + lw^T rows`` (``scale``: the current state's, B x N or
    None) with S_c the centred shared matrix (squared row norms ``shared_sq``, N).
    lw: B x J' x N (scaled in place and kept as the new state's L: old L, the
    update weights, ones for the constant); rows: B x J' x C, centred;
    dots: B x J' x N, ``S_c[n] . rows[j]`` (overwritten).
    """
    c = rows.shape[-1]
    gram = torch.bmm(rows, rows.transpose(1, 2))  # B x J' x J'
    # var * C = scale^2 |S_c|^2 + 2 scale sum_j lw_j dots_j + lw^T gram lw
    if scale is None:
        dots.mul_(2.0)
    else:
        dots.mul_(scale[:, None, :] * 2.0)
    var = dots.baddbmm_(gram, lw).mul_(lw).sum(1)
    var.add_(shared_sq if scale is None else shared_sq * scale.square())
    s = var.div_(c).add_(norm.eps).rsqrt_()
    lw.mul_(s[:, None, :])
    return LowRankTokens(s if scale is None else s * scale, lw, rows * norm.weight)


__all__ = [
    "LowRankTokens",
    "Scratch",
    "attend",
    "image_logits",
    "normalised",
    "shared_product",
    "softmax",
    "split_heads",
    "split_heads_t",
]
