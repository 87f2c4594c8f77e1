"""The mask decoder's layers in numpy (float32), for :mod:`.numpy_decoder`.

Each mirrors its torch module in :mod:`mobilesam.modeling` and reads that module's
weights by their state-dict names, so the function and the rounding order are the
reference's: matrix products as ``x @ w.T + b``, LayerNorm as mean and biased variance,
softmax after subtracting the row maximum, attention scaled by dividing by sqrt(d).
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32
Weights = dict[str, np.ndarray]


# erf by Abramowitz & Stegun 7.1.26: erf(z) = 1 - t (a1 + t (a2 + ... + t a5)) exp(-z^2),
# t = 1 / (1 + p z), z >= 0, absolute error <= 1.5e-7 (float32 resolves ~6e-8 at 1).
ERF_P = 0.3275911
ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as ``torch.nn.GELU()``: x * Phi(x), within ~3e-7 (relative above 1).

    numpy has no ``erf``; this is a rational approximation evaluated in float32 with
    in-place passes only (no gathers, so it also beat a table of Phi interpolated
    linearly: 0.48 against 0.69 ms per 128K values on a 2-core Xeon). GELU(x) is 0 for
    very negative x and x for very positive x, NaN stays NaN.
    """
    z = np.abs(x)
    z *= F32(1.0 / math.sqrt(2.0))
    t = z * F32(ERF_P)
    t += F32(1.0)
    np.reciprocal(t, out=t)
    poly = t * F32(ERF_A[-1])
    for a in ERF_A[-2::-1]:
        poly += F32(a)
        poly *= t
    with np.errstate(over="ignore"):  # |x| > ~1e19: z^2 is inf, exp(-inf) = 0, as it should
        np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # erfc(|x| / sqrt 2)
    np.subtract(F32(1.0), poly, out=poly)
    np.copysign(poly, x, out=poly)  # erf(x / sqrt 2)
    poly += F32(1.0)
    poly *= F32(0.5)
    poly *= x
    return poly


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, F32(0.0))


class Norm:
    """``nn.LayerNorm`` over the last axis (``LayerNorm2d`` too, on channels-last data)."""

    def __init__(self, p: Weights, name: str, eps: float) -> None:
        self.weight, self.bias, self.eps = p[f"{name}.weight"], p[f"{name}.bias"], F32(eps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        centred = x - x.mean(-1, keepdims=True)
        var = np.square(centred).mean(-1, keepdims=True)
        centred /= np.sqrt(var + self.eps)
        centred *= self.weight
        centred += self.bias
        return centred


class Linear:
    """``nn.Linear``: ``x @ w.T + b`` (the transposed view goes to BLAS as is, no copy)."""

    def __init__(self, p: Weights, name: str) -> None:
        self.w, self.b = p[f"{name}.weight"].T, p[f"{name}.bias"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.w
        y += self.b
        return y


class MLP:
    """Linear layers with ReLU between them (the hypernetworks and the IoU head)."""

    def __init__(self, p: Weights, name: str) -> None:
        n = 0
        while f"{name}.layers.{n}.weight" in p:
            n += 1
        self.layers = [Linear(p, f"{name}.layers.{i}") for i in range(n)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers[:-1]:
            x = relu(layer(x))
        return self.layers[-1](x)


class Attention:
    """The decoder's multi-head attention (internal width possibly down-projected).

    Between a few prompt tokens (T ~ 7) and the image tokens (N = 4096) the projections
    are moved to the small side: a head's logits ``(x W_q^T + b_q) . (y W_k^T + b_k)``
    are ``x . (W_q^T k)`` plus a constant with the projected token ``k`` folded into the
    weight, and its output ``P (y W_v^T + b_v)`` is ``(P y) W_v^T + b_v`` (the weights
    of a row of P sum to 1). Each cross-attention then costs two (H*T) x N x C products
    instead of projecting all N image tokens, and makes no N x D intermediates: the
    same sums in another order (float32 rounding differs, ~1e-6 relative).
    """

    def __init__(self, p: Weights, name: str, heads: int) -> None:
        self.q, self.k, self.v = (Linear(p, f"{name}.{n}_proj") for n in "qkv")
        self.out = Linear(p, f"{name}.out_proj")
        self.heads = heads
        inner, width = p[f"{name}.q_proj.weight"].shape  # D x C
        self.head_dim = inner // heads
        self.scale = F32(math.sqrt(self.head_dim))
        h, d = heads, self.head_dim
        self.wq_heads = p[f"{name}.q_proj.weight"].reshape(h, d, width)
        self.wk_heads = p[f"{name}.k_proj.weight"].reshape(h, d, width)
        self.wv_heads_t = p[f"{name}.v_proj.weight"].reshape(h, d, width).transpose(0, 2, 1)
        self.wo_heads = p[f"{name}.out_proj.weight"].reshape(width, h, d).transpose(1, 2, 0)

    def heads_of(self, x: np.ndarray) -> np.ndarray:
        """T x D -> heads x T x D/heads."""
        return x.reshape(x.shape[0], self.heads, self.head_dim).transpose(1, 0, 2)

    def __call__(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Plain attention, T x C each (the tokens' self-attention)."""
        qh, kh, vh = self.heads_of(self.q(q)), self.heads_of(self.k(k)), self.heads_of(self.v(v))
        out = softmax((qh @ kh.transpose(0, 2, 1)) / self.scale) @ vh
        return self.out(out.transpose(1, 0, 2).reshape(q.shape[0], -1))

    def tokens_to_image(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """T token queries over N image keys / values (N x C) -> T x C."""
        t, h = q.shape[0], self.heads
        qh = self.heads_of(self.q(q))  # H x T x d
        folded = (qh @ self.wk_heads).reshape(h * t, -1)  # H*T x C
        shift = (qh * self.k.b.reshape(h, 1, -1)).sum(-1).reshape(h * t, 1)
        logits = folded @ k.T
        logits += shift
        logits /= self.scale
        weights = softmax(logits)  # over the image tokens
        mixed = (weights @ v).reshape(h, t, -1)  # H x T x C
        heads = mixed @ self.wv_heads_t + self.v.b.reshape(h, 1, -1)  # H x T x d
        return self.out(heads.transpose(1, 0, 2).reshape(t, -1))

    def image_to_tokens(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """N image queries (N x C) over T token keys / values (T x C) -> N x C."""
        t, h = k.shape[0], self.heads
        kh, vh = self.heads_of(self.k(k)), self.heads_of(self.v(v))  # H x T x d
        folded = (kh @ self.wq_heads).reshape(h * t, -1)  # H*T x C
        shift = (kh * self.q.b.reshape(h, 1, -1)).sum(-1).reshape(h * t, 1)
        logits = folded @ q.T  # H*T x N: the softmax runs down the short axis, N-wide
        logits += shift
        logits /= self.scale
        logits = logits.reshape(h, t, -1)
        logits -= logits.max(1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(1, keepdims=True)
        values = (vh @ self.wo_heads).reshape(h * t, -1)  # H*T x C: values through out_proj
        out = logits.reshape(h * t, -1).T @ values
        out += self.out.b
        return out


class TwoWayLayer:
    """One block of the two-way transformer: token self-attention, token -> image,
    MLP on the tokens, image -> token (as ``TwoWayAttentionBlock``)."""

    def __init__(self, p: Weights, name: str, heads: int, first: bool) -> None:
        self.self_attn = Attention(p, f"{name}.self_attn", heads)
        self.to_image = Attention(p, f"{name}.cross_attn_token_to_image", heads)
        self.to_tokens = Attention(p, f"{name}.cross_attn_image_to_token", heads)
        self.lin1, self.lin2 = Linear(p, f"{name}.mlp.lin1"), Linear(p, f"{name}.mlp.lin2")
        self.norms = [Norm(p, f"{name}.norm{j}", 1e-5) for j in range(1, 5)]
        self.first = first  # the first layer's self-attention replaces the queries, no PE

    def __call__(
        self,
        queries: np.ndarray,
        keys: np.ndarray,
        prompt: np.ndarray,
        pe: np.ndarray,
        keys_pe: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokens T x C and image tokens N x C -> both updated (``keys_pe``: keys + pe)."""
        n1, n2, n3, n4 = self.norms
        if self.first:
            queries = n1(self.self_attn(queries, queries, queries))
        else:
            q = queries + prompt
            queries = n1(queries + self.self_attn(q, q, queries))
        if keys_pe is None:
            keys_pe = keys + pe
        queries = n2(queries + self.to_image.tokens_to_image(queries + prompt, keys_pe, keys))
        queries = n3(queries + self.lin2(relu(self.lin1(queries))))
        update = self.to_tokens.image_to_tokens(keys_pe, queries + prompt, queries)
        update += keys
        return queries, n4(update)
