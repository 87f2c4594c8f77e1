"""Mask decoder for many prompts on one image, without per-prompt image tokens.

The reference decoder repeats the 256x64x64 image embedding once per prompt and
runs every projection, LayerNorm and the first upscaling convolution on
``prompts x 4096`` image tokens. Here the same function is computed in another
order:

* layer 0 sees the same image tokens for every prompt, so its projections of the
  image tokens are computed once and shared;
* after that, a prompt's image tokens are kept in the low-rank form of
  :mod:`.lowrank` (shared matrix, per-pixel scales, ~2 x heads x tokens rows per
  prompt): attention logits and outputs, the LayerNorm statistics and the first
  transposed convolution are computed from the factors, with everything that
  touches the shared matrix computed once per image;
* the IoU head runs before the upscaling, so masks are upscaled only for prompts
  that keep at least one mask, and the transposed convolutions run as matmuls on
  channels-last tensors.

The results equal :class:`~mobilesam.modeling.MaskDecoder`'s up to float32
rounding (reordered sums).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..modeling import Sam
from .fused_attention import FusedDecoderAttention
from .lowrank import (
    LowRankTokens,
    Scratch,
    attend,
    image_logits,
    normalised,
    shared_product,
    softmax,
    split_heads,
    split_heads_t,
)


def _plain(attn: torch.nn.Module) -> torch.nn.Module:
    """The attention module whose weights the low-rank steps read (unwraps the SDPA form)."""
    return attn.attn if isinstance(attn, FusedDecoderAttention) else attn


def _heads(attn: torch.nn.Module) -> tuple[int, int]:
    h = attn.num_heads
    return h, attn.internal_dim // h


def _centred(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(-1, keepdim=True)


def _activation_(act: torch.nn.Module, x: torch.Tensor) -> None:
    """Apply the upscaling activation in place (GELU in SAM; others fall back to a copy)."""
    if isinstance(act, torch.nn.GELU):
        torch.ops.aten.gelu_(x, approximate=act.approximate)
    elif isinstance(act, torch.nn.ReLU):
        x.relu_()
    else:
        x.copy_(act(x))


class FastPointDecoder:
    """Decode B prompts (sparse embeddings, no mask input) against one image embedding.

    Holds reusable scratch buffers, so one instance must not decode from two threads
    at once (like a predictor, which holds the current image).
    """

    def __init__(self, model: Sam) -> None:
        self.model = model
        dec = model.mask_decoder
        self.dec = dec
        self.tf = dec.transformer
        if self.tf.depth != 2:
            raise ValueError("FastPointDecoder supports the two-layer two-way transformer only")
        self.ready = False
        self.ws = Scratch()

    # ------------------------------------------------------------ per image
    @torch.no_grad()
    def set_embedding(self, features: torch.Tensor) -> None:
        """Precompute every prompt-independent product for ``features`` (1xCxhxw)."""
        if features.dtype != self.ws.dtype:
            self.ws = Scratch(features.dtype)
        pe_mod = self.model.prompt_encoder
        dense = pe_mod.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys0 = (features + dense).flatten(2)[0].transpose(0, 1).contiguous()  # N x C
        pe = pe_mod.get_dense_pe().flatten(2)[0].transpose(0, 1).contiguous()
        self.grid = tuple(features.shape[-2:])
        self.n = keys0.shape[0]
        l0, l1 = self.tf.layers
        # layer 0 attends to the shared image tokens directly
        kpe = keys0 + pe
        t2i, i2t = _plain(l0.cross_attn_token_to_image), _plain(l0.cross_attn_image_to_token)
        self.l0_k = split_heads_t(t2i.k_proj(kpe), t2i.num_heads)
        self.l0_v = split_heads(t2i.v_proj(keys0), t2i.num_heads)
        self.l0_q = split_heads_t(i2t.q_proj(kpe), i2t.num_heads)
        # layer 0's norm4: statistics of keys0 + update
        k0c = _centred(keys0)
        self.sq0 = k0c.square().sum(-1)
        self.dots0 = self._row_basis(k0c, i2t)
        # image tokens after layer 0: scale * S1 + L^T R + b0
        g0, b0 = l0.norm4.weight, l0.norm4.bias
        shared1 = k0c * g0
        self.proj1_t2i = self._projections(shared1, b0, pe, _plain(l1.cross_attn_token_to_image))
        self.proj1_i2t = self._projections(
            shared1, b0, pe, _plain(l1.cross_attn_image_to_token), query=True
        )
        # layer 1's norm4
        shared1_c = _centred(shared1)
        self.sq1 = shared1_c.square().sum(-1)
        self.dots1_old = self._row_basis(_centred(shared1_c * g0), i2t)
        self.dots1_new = self._row_basis(shared1_c, _plain(l1.cross_attn_image_to_token))
        self.dots1_const = shared1_c @ b0
        self.const1_c = _centred(b0)
        # image tokens after layer 1: scale * S2 + L^T R + b1
        g1, b1 = l1.norm4.weight, l1.norm4.bias
        shared2 = shared1_c * g1
        self.proj_final = self._projections(
            shared2, b1, pe, _plain(self.tf.final_attn_token_to_image)
        )
        ct1 = self.dec.output_upscaling[0]
        c, c1 = ct1.weight.shape[:2]
        # ConvTranspose2d(k=2, s=2) is a per-pixel linear map to a 2x2 block.
        self.w1 = ct1.weight.permute(0, 2, 3, 1).reshape(c, 4 * c1)  # C x (di dj o)
        self.y_shared = shared2 @ self.w1
        self.y_const = b1 @ self.w1 + ct1.bias.repeat(4)
        self._y_region: tuple[tuple[int, int] | None, torch.Tensor] = (None, self.y_shared)
        ct2 = self.dec.output_upscaling[3]
        self.w2 = ct2.weight.permute(0, 2, 3, 1).reshape(c1, -1)  # C1 x (di2 dj2 o2)
        self.b2 = ct2.bias.repeat(4)
        self.ready = True

    @staticmethod
    def _row_basis(shared_c: torch.Tensor, attn: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        """What ``shared_c[n] . row`` needs for rows ``v_ht W_o,h + b_o / H`` of ``attn``."""
        h, _ = _heads(attn)
        w = split_heads_t(shared_c @ attn.out_proj.weight, h)  # H x dh x N
        return w, (shared_c @ attn.out_proj.bias) / h

    @staticmethod
    def _projections(
        shared: torch.Tensor,
        const: torch.Tensor,
        pe: torch.Tensor,
        attn: torch.nn.Module,
        query: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Shared products of one attention's projections with image tokens ``shared``/``const``."""
        h, _ = _heads(attn)
        lin = attn.q_proj if query else attn.k_proj
        out = {
            "w": lin.weight,
            "shared_t": split_heads_t(shared @ lin.weight.T, h),
            "offset_t": split_heads_t(lin(const + pe), h),
        }
        if not query:
            out["wv"] = attn.v_proj.weight
            out["shared_v"] = split_heads(shared @ attn.v_proj.weight.T, h)
            out["const_v"] = attn.v_proj(const)
        return out

    # ------------------------------------------------------------ per prompt
    def tokens(self, sparse: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings BxKxC -> decoder tokens Bx(5+K)xC (IoU, mask tokens, prompts)."""
        out = torch.cat([self.dec.iou_token.weight, self.dec.mask_tokens.weight], dim=0)
        out = out.unsqueeze(0).expand(sparse.shape[0], -1, -1)
        return torch.cat([out, sparse], dim=1)

    def _dots(
        self, basis: tuple[torch.Tensor, torch.Tensor], v: torch.Tensor, out: torch.Tensor
    ) -> None:
        """``out`` (B x H x T x N) <- dots of a shared matrix with rows ``v_ht W_o,h + b_o/H``."""
        w, bias = basis
        shared_product(v, w, out).add_(bias)

    @staticmethod
    def _update_rows(attn: torch.nn.Module, v: torch.Tensor) -> torch.Tensor:
        """B x (H*T) x C rows ``v_ht W_o,h + b_o / H`` (image-to-token attention output)."""
        b, t, h, dh = v.shape
        c = attn.out_proj.weight.shape[0]
        u = torch.einsum("bthd,chd->bhtc", v, attn.out_proj.weight.reshape(c, h, dh))
        # Each head's weights sum to 1 over the tokens, so the bias rides on the values.
        return (u + attn.out_proj.bias / h).reshape(b, h * t, c)

    def _token_to_image(
        self, attn: torch.nn.Module, q_in: torch.Tensor, state: LowRankTokens, proj: dict
    ) -> torch.Tensor:
        b, t, _ = q_in.shape
        h, dh = _heads(attn)
        qh = attn.q_proj(q_in).reshape(b, t, h, dh) / math.sqrt(dh)
        rows_k = (state.R @ proj["w"].T).reshape(b, -1, h, dh)
        logits = image_logits(qh, proj["shared_t"], proj["offset_t"], rows_k, state, self.ws)
        a = softmax(logits, -1, self.ws)
        rows_v = (state.R @ proj["wv"].T).reshape(b, -1, h, dh)
        return attn.out_proj(attend(a, proj["shared_v"], rows_v, proj["const_v"], state, self.ws))

    @torch.no_grad()
    def transformer(
        self, sparse: torch.Tensor, mask_ids: tuple[int, ...] | None = None
    ) -> tuple[torch.Tensor, LowRankTokens]:
        """Prompt embeddings BxKxC -> (tokens BxTxC, image tokens) after the decoder.

        With ``mask_ids`` (e.g. ``(1, 2, 3)`` for multimask output) the final attention
        runs only for the IoU token and those mask tokens, the only ones the outputs
        read; the other rows of the returned tokens are then not final.
        The image tokens' factors live in this decoder's scratch buffers: they are
        valid until the next ``transformer`` call (index them to keep a copy).
        """
        if not self.ready:
            raise RuntimeError("call set_embedding first")
        tokens = self.tokens(sparse)
        b, t, c = tokens.shape
        n, ws = self.n, self.ws
        l0, l1 = self.tf.layers
        # ---- layer 0: image tokens are shared by all prompts
        q = l0.norm1(l0.self_attn(tokens, tokens, tokens))
        att = _plain(l0.cross_attn_token_to_image)
        h, dh = _heads(att)
        qq = att.q_proj(q + tokens).reshape(b * t, h, dh).transpose(0, 1) / math.sqrt(dh)
        logits = torch.bmm(qq, self.l0_k, out=ws("logits", h, b * t, n))
        a = softmax(logits, -1, ws)
        o = torch.bmm(a, self.l0_v).transpose(0, 1).reshape(b, t, h * dh)
        q = l0.norm2(q + att.out_proj(o))
        q = l0.norm3(q + l0.mlp(q))
        att = _plain(l0.cross_attn_image_to_token)
        h, dh = _heads(att)
        kt = att.k_proj(q + tokens).reshape(b, t, h, dh) / math.sqrt(dh)
        logits = shared_product(kt, self.l0_q, ws("logits", b, h, t, n))
        lw = ws("L1", b, h * t, n)  # the returned state's factors live in scratch too
        torch.ops.aten._softmax.out(logits, 2, False, out=lw.view(b, h, t, n))  # over tokens
        v0 = att.v_proj(q).reshape(b, t, h, dh)
        dots = ws("dots", b, h * t, n)
        self._dots(self.dots0, v0, dots.view(b, h, t, n))
        rows = _centred(self._update_rows(att, v0))
        state = normalised(None, lw, rows, dots, self.sq0, l0.norm4)
        # ---- layer 1: per-prompt image tokens, in low-rank form
        qp = q + tokens
        q = l1.norm1(q + l1.self_attn(qp, qp, q))
        att = _plain(l1.cross_attn_token_to_image)
        q = l1.norm2(q + self._token_to_image(att, q + tokens, state, self.proj1_t2i))
        q = l1.norm3(q + l1.mlp(q))
        att = _plain(l1.cross_attn_image_to_token)
        h, dh = _heads(att)
        kt = att.k_proj(q + tokens).reshape(b, t, h, dh) / math.sqrt(dh)
        p = self.proj1_i2t
        rows_q = (state.R @ p["w"].T).reshape(b, -1, h, dh)
        logits = image_logits(kt, p["shared_t"], p["offset_t"], rows_q, state, ws)
        probs = softmax(logits, 2, ws)  # over the tokens
        v1 = att.v_proj(q).reshape(b, t, h, dh)
        j, k = state.L.shape[1], h * t
        lw = ws("L2", b, j + k + 1, n)
        lw[:, :j].copy_(state.L)
        lw[:, j : j + k].copy_(probs.view(b, k, n))
        lw[:, j + k].fill_(1.0)
        dots = ws("dots", b, j + k + 1, n)
        self._dots(self.dots1_old, v0, dots[:, :j].view(b, h, t, n))
        self._dots(self.dots1_new, v1, dots[:, j : j + k].view(b, h, t, n))
        dots[:, j + k].copy_(self.dots1_const)
        rows = torch.cat(
            [
                _centred(state.R),
                _centred(self._update_rows(att, v1)),
                self.const1_c.expand(b, 1, c),
            ],
            dim=1,
        )
        state = normalised(state.scale, lw, rows, dots, self.sq1, l1.norm4)
        # ---- final attention
        final = _plain(self.tf.final_attn_token_to_image)
        pf = self.proj_final
        if mask_ids is None:
            out = self._token_to_image(final, q + tokens, state, pf)
            return self.tf.norm_final_attn(q + out), state
        keep = [0] + [1 + i for i in mask_ids]
        qs = q[:, keep]
        q = q.clone()
        out = self._token_to_image(final, qs + tokens[:, keep], state, pf)
        q[:, keep] = self.tf.norm_final_attn(qs + out)
        return q, state

    def iou(self, tokens_out: torch.Tensor, multimask: bool = True) -> torch.Tensor:
        """IoU predictions Bx3 (multimask) or Bx1 from the transformer's tokens."""
        iou = self.dec.iou_prediction_head(tokens_out[:, 0, :])
        return iou[:, 1:] if multimask else iou[:, :1]

    @torch.no_grad()
    def masks(
        self,
        tokens_out: torch.Tensor,
        state: LowRankTokens,
        mask_ids: tuple[int, ...] = (1, 2, 3),
        select: torch.Tensor | None = None,
        region: tuple[int, int] | None = None,
        chunk: int = 8,
    ) -> torch.Tensor:
        """Low-res logits BxMx(4h)x(4w) for the given mask tokens (1..3 = multimask).

        ``select`` (indices) upscales only those prompts, ``chunk`` at a time so the
        upscaling's intermediates stay small and reused. ``region`` = (rows, cols) of
        the embedding grid computes only that top-left part (the upscaling is
        per-pixel); the rest of the output is ``-inf``. The automatic mask generator
        passes the part its resize reads: the rest maps to the padding that
        post-processing crops away.
        """
        gh, gw = self.grid
        if select is None:
            select = torch.arange(len(state))
        rows, cols = region or (gh, gw)
        if not (0 < rows <= gh and 0 < cols <= gw):
            raise ValueError(f"region {region} outside the {gh}x{gw} embedding grid")
        parts = [
            self._masks_chunk(tokens_out[idx], state, idx, mask_ids, rows, cols)
            for idx in torch.split(select, chunk)
        ]
        low = torch.cat(parts) if parts else self.ws.new_empty(0, len(mask_ids), 4 * rows, 4 * cols)
        if (rows, cols) == (gh, gw):
            return low
        out = low.new_full((low.shape[0], len(mask_ids), 4 * gh, 4 * gw), -torch.inf)
        out[:, :, : 4 * rows, : 4 * cols] = low
        return out

    def _shared_region(self, rows: int, cols: int) -> torch.Tensor:
        """The shared part of the first upscaling convolution on a top-left grid region."""
        key = (rows, cols)
        if self._y_region[0] != key:
            gh, gw = self.grid
            y = self.y_shared.view(gh, gw, -1)[:rows, :cols].reshape(rows * cols, -1)
            self._y_region = (key, y)
        return self._y_region[1]

    def _masks_chunk(
        self,
        tokens_out: torch.Tensor,
        state: LowRankTokens,
        idx: torch.Tensor,
        mask_ids: tuple[int, ...],
        rows: int,
        cols: int,
    ) -> torch.Tensor:
        dec = self.dec
        b, n, ws = len(idx), rows * cols, self.ws
        gh, gw = self.grid
        up = dec.output_upscaling
        ln, act1, ct2, act2 = up[1], up[2], up[3], up[4]
        c1, c2 = ct2.weight.shape[:2]

        def pick(x: torch.Tensor) -> torch.Tensor:  # B' x ... x N -> b x ... x region
            x = x.view(*x.shape[:-1], gh, gw)[..., :rows, :cols]
            return x[idx].reshape(b, *x.shape[1:-2], n)

        # first transposed convolution, from the factors:
        # y = scale * Y0 + L^T (R W1) + y0, the constant y0 added as one more factor row
        j = state.L.shape[1]
        lw = ws("up1_factors", b, j + 1, n)
        src = state.L.view(len(state), j, gh, gw)[:, :, :rows, :cols]
        torch.index_select(src, 0, idx, out=lw[:, :j].view(b, j, rows, cols))
        lw[:, j].fill_(1.0)
        scale = None if state.scale is None else pick(state.scale)
        rw = torch.cat([state.R[idx] @ self.w1, self.y_const.expand(b, 1, -1)], dim=1)
        y = torch.bmm(lw.transpose(1, 2), rw, out=ws("up1", b, n, 4 * c1))
        y_shared = self._shared_region(rows, cols)
        if scale is None:
            y.add_(y_shared)
        else:
            y.addcmul_(scale[..., None], y_shared)
        # (the functional form beats native_layer_norm.out into scratch by ~40% here)
        yn = F.layer_norm(y.view(b * n * 4, c1), [c1], ln.weight, ln.bias, ln.eps)
        _activation_(act1, yn)
        z = torch.mm(yn, self.w2, out=ws("up2", b * n * 4, 4 * c2)).add_(self.b2)
        _activation_(act2, z)
        hyper = torch.stack(
            [dec.output_hypernetworks_mlps[i](tokens_out[:, 1 + i, :]) for i in mask_ids], dim=1
        )  # B x M x C2
        m = torch.bmm(hyper, z.view(b, n * 16, c2).transpose(1, 2))  # B x M x (i j di dj di2 dj2)
        # to (i di di2, j dj dj2): the sub-pixels as channels (di di2 dj dj2) of a 4x pixel
        # shuffle, ~2.5x faster than one eight-axis permute copy
        k = b * len(mask_ids)
        m = m.view(k, rows, cols, 2, 2, 2, 2).permute(0, 3, 5, 4, 6, 1, 2)
        m = F.pixel_shuffle(m.reshape(k, 16, rows, cols), 4)
        return m.view(b, len(mask_ids), rows * 4, cols * 4)

    def prompt_embeddings(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Points BxKx2 (input frame) and labels BxK -> sparse embeddings."""
        sparse, _ = self.model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        return sparse


__all__ = ["FastPointDecoder"]
