"""Mask decoder for many single-point prompts on one image, without copying the embedding.

The reference decoder repeats the 256x64x64 image embedding once per prompt and
runs every projection on ``prompts x 4096`` image tokens. Here the same function
is computed in another order:

* layer 0 sees the same image tokens for every prompt, so its projections of the
  image tokens are computed once and shared;
* an attention whose queries (or keys) are the 7 prompt tokens is rewritten so the
  projection matrices act on the 7 token vectors instead of the 4096 image tokens
  (``q . (W_k x) = (W_k^T q) . x``; ``W_o (A V) = A (W_o V)``), which turns every
  per-prompt image-token projection into one batched matmul against 56 vectors;
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


class FastPointDecoder:
    """Decode B single-point prompts against one image embedding (1xCxhxw)."""

    def __init__(self, model: Sam) -> None:
        self.model = model
        dec = model.mask_decoder
        self.dec = dec
        self.tf = dec.transformer
        if self.tf.depth != 2:
            raise ValueError("FastPointDecoder supports the two-layer two-way transformer only")
        self.keys0: torch.Tensor | None = None

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _heads(attn: torch.nn.Module) -> tuple[int, int]:
        h = attn.num_heads
        return h, attn.internal_dim // h

    def set_embedding(self, features: torch.Tensor) -> None:
        """Precompute the prompt-independent parts of layer 0 for ``features`` (1xCxhxw)."""
        pe_mod = self.model.prompt_encoder
        dense = pe_mod.no_mask_embed.weight.reshape(1, -1, 1, 1)
        src = features + dense  # the same for every prompt
        self.keys0 = src.flatten(2)[0].transpose(0, 1).contiguous()  # N x C
        self.key_pe = pe_mod.get_dense_pe().flatten(2)[0].transpose(0, 1).contiguous()
        self.grid = tuple(features.shape[-2:])
        layer0 = self.tf.layers[0]
        kpe = self.keys0 + self.key_pe
        t2i, i2t = layer0.cross_attn_token_to_image, layer0.cross_attn_image_to_token
        h, dh = self._heads(t2i)
        n = kpe.shape[0]
        self.l0_k = t2i.k_proj(kpe).reshape(n, h, dh).permute(1, 2, 0).contiguous()  # H x dh x N
        self.l0_v = t2i.v_proj(self.keys0).reshape(n, h, dh).transpose(0, 1).contiguous()
        h2, dh2 = self._heads(i2t)
        self.l0_q = i2t.q_proj(kpe).reshape(n, h2, dh2).permute(1, 2, 0).contiguous()  # H x dh x N

    def tokens(self, sparse: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings BxKxC -> decoder tokens Bx(5+K)xC (IoU, mask tokens, prompts)."""
        out = torch.cat([self.dec.iou_token.weight, self.dec.mask_tokens.weight], dim=0)
        out = out.unsqueeze(0).expand(sparse.shape[0], -1, -1)
        return torch.cat([out, sparse], dim=1)

    # ------------------------------------------------------------ attention
    def _image_logits(
        self, r: torch.Tensor, bias: torch.Tensor, keys: torch.Tensor
    ) -> torch.Tensor:
        """Bx(HT)xN logits ``r . (keys + key_pe) + bias`` without materialising keys + key_pe."""
        b, m, c = r.shape
        pe_part = torch.mm(r.reshape(b * m, c), self.key_pe.T).reshape(b, m, -1)
        return pe_part.add_(bias).baddbmm_(r, keys.transpose(1, 2))

    def _t2i(self, attn: torch.nn.Module, q_in: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Token-to-image attention with per-prompt image tokens (BxNxC, keys + key_pe)."""
        b, t, _ = q_in.shape
        h, dh = self._heads(attn)
        c = keys.shape[-1]
        # The 1/sqrt(dh) scale is applied to the (small) projected queries.
        q = attn.q_proj(q_in).reshape(b, t, h, dh) / math.sqrt(dh)
        wk = attn.k_proj.weight.reshape(h, dh, c)
        r = torch.einsum("bthd,hdc->bhtc", q, wk).reshape(b, h * t, c)
        bias = (q * attn.k_proj.bias.reshape(h, dh)).sum(-1).transpose(1, 2).reshape(b, h * t, 1)
        a = torch.softmax(self._image_logits(r, bias, keys), dim=-1)
        s = torch.bmm(a, keys).reshape(b, h, t, c)  # attention-weighted image tokens
        wv = attn.v_proj.weight.reshape(h, dh, c)
        v = torch.einsum("bhtc,hdc->bthd", s, wv) + attn.v_proj.bias.reshape(h, dh)
        return attn.out_proj(v.reshape(b, t, h * dh))

    def _i2t_update(
        self,
        attn: torch.nn.Module,
        logits: torch.Tensor,
        tok_q: torch.Tensor,
        base: torch.Tensor,
        norm: torch.nn.Module,
        inplace: bool = False,
    ) -> torch.Tensor:
        """Finish image-to-token attention: softmax over tokens per head, add, LayerNorm.

        logits: Bx(H*T)xN, already scaled (tokens on the middle axis, so the softmax
        over the 7 tokens runs vectorised along N); tok_q: BxTxC token values.
        Returns ``norm(base + out_proj(attention))``, BxNxC.
        """
        b, _, n = logits.shape
        t = tok_q.shape[1]
        h, dh = self._heads(attn)
        c = attn.out_proj.weight.shape[0]
        a = torch.softmax(logits.reshape(b, h, t, n), dim=2).reshape(b, h * t, n)
        v = attn.v_proj(tok_q).reshape(b, t, h, dh)
        wo = attn.out_proj.weight.reshape(c, h, dh)
        u = torch.einsum("bthd,chd->bhtc", v, wo)
        # Each head's weights sum to 1, so the output bias can ride on the values.
        u = (u + attn.out_proj.bias / h).reshape(b, h * t, c)
        if inplace:  # per-prompt image tokens that are no longer needed
            return norm(base.baddbmm_(a.transpose(1, 2), u))
        return norm(torch.baddbmm(base, a.transpose(1, 2), u))

    # ---------------------------------------------------------- transformer
    @torch.no_grad()
    def transformer(
        self, sparse: torch.Tensor, mask_ids: tuple[int, ...] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings BxKxC -> (tokens BxTxC, image tokens BxNxC) after the decoder.

        With ``mask_ids`` (e.g. ``(1, 2, 3)`` for multimask output) the final attention
        runs only for the IoU token and those mask tokens, the only ones the outputs
        read; the other rows of the returned tokens are then not final.
        """
        if self.keys0 is None:
            raise RuntimeError("call set_embedding first")
        tokens = self.tokens(sparse)
        b, t, c = tokens.shape
        l0, l1 = self.tf.layers
        # ---- layer 0: image tokens are shared by all prompts
        q = l0.norm1(l0.self_attn(tokens, tokens, tokens))
        att = l0.cross_attn_token_to_image
        h, dh = self._heads(att)
        qq = att.q_proj(q + tokens).reshape(b * t, h, dh).transpose(0, 1)  # H x BT x dh
        a = torch.softmax(torch.bmm(qq, self.l0_k) / math.sqrt(dh), dim=-1)
        o = torch.bmm(a, self.l0_v).transpose(0, 1).reshape(b, t, h * dh)
        q = l0.norm2(q + att.out_proj(o))
        q = l0.norm3(q + l0.mlp(q))
        att = l0.cross_attn_image_to_token
        h, dh = self._heads(att)
        kt = att.k_proj(q + tokens).reshape(b * t, h, dh).transpose(0, 1)  # H x BT x dh
        logits = torch.bmm(kt, self.l0_q) / math.sqrt(dh)  # H x BT x N
        n = logits.shape[-1]
        logits = logits.reshape(h, b, t, n).transpose(0, 1).reshape(b, h * t, n)
        keys = self._i2t_update(att, logits, q, self.keys0.unsqueeze(0), l0.norm4)
        # ---- layer 1 and the final attention: image tokens differ per prompt
        qp = q + tokens
        q = l1.norm1(q + l1.self_attn(qp, qp, q))
        q = l1.norm2(q + self._t2i(l1.cross_attn_token_to_image, q + tokens, keys))
        q = l1.norm3(q + l1.mlp(q))
        att = l1.cross_attn_image_to_token
        h, dh = self._heads(att)
        kt = att.k_proj(q + tokens).reshape(b, t, h, dh) / math.sqrt(dh)
        r = torch.einsum("bthd,hdc->bhtc", kt, att.q_proj.weight.reshape(h, dh, c))
        bias = (kt * att.q_proj.bias.reshape(h, dh)).sum(-1).transpose(1, 2).reshape(b, h * t, 1)
        logits = self._image_logits(r.reshape(b, h * t, c), bias, keys)
        keys = self._i2t_update(att, logits, q, keys, l1.norm4, inplace=True)
        final = self.tf.final_attn_token_to_image
        if mask_ids is None:
            return self.tf.norm_final_attn(q + self._t2i(final, q + tokens, keys)), keys
        rows = [0] + [1 + i for i in mask_ids]
        qs = q[:, rows]
        q = q.clone()
        q[:, rows] = self.tf.norm_final_attn(qs + self._t2i(final, qs + tokens[:, rows], keys))
        return q, keys

    def iou(self, tokens_out: torch.Tensor, multimask: bool = True) -> torch.Tensor:
        """IoU predictions Bx3 (multimask) or Bx1 from the transformer's tokens."""
        iou = self.dec.iou_prediction_head(tokens_out[:, 0, :])
        return iou[:, 1:] if multimask else iou[:, :1]

    @torch.no_grad()
    def masks(
        self, tokens_out: torch.Tensor, keys: torch.Tensor, mask_ids: tuple[int, ...] = (1, 2, 3)
    ) -> torch.Tensor:
        """Low-res logits BxMx(4h)x(4w) for the given mask tokens (1..3 = multimask)."""
        dec = self.dec
        b, n, c = keys.shape
        gh, gw = self.grid
        up = dec.output_upscaling
        ct1, ln, act1, ct2, act2 = up[0], up[1], up[2], up[3], up[4]
        c1 = ct1.weight.shape[1]
        # ConvTranspose2d(k=2, s=2) is a per-pixel linear map to a 2x2 block.
        w1 = ct1.weight.permute(0, 2, 3, 1).reshape(c, 4 * c1)  # C x (di dj o)
        y = torch.addmm(ct1.bias.repeat(4), keys.reshape(b * n, c), w1).reshape(b * n * 4, c1)
        y = act1(F.layer_norm(y, (c1,), ln.weight, ln.bias, ln.eps))
        c2 = ct2.weight.shape[1]
        w2 = ct2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)  # C1 x (di2 dj2 o2)
        z = act2(torch.addmm(ct2.bias.repeat(4), y, w2)).reshape(b, n * 16, c2)
        hyper = torch.stack(
            [dec.output_hypernetworks_mlps[i](tokens_out[:, 1 + i, :]) for i in mask_ids], dim=1
        )  # B x M x C2
        m = torch.bmm(z, hyper.transpose(1, 2))  # B x (i j di dj di2 dj2) x M
        m = m.reshape(b, gh, gw, 2, 2, 2, 2, len(mask_ids))
        m = m.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(b, len(mask_ids), gh * 4, gw * 4)
        return m

    def prompt_embeddings(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Points BxKx2 (input frame) and labels BxK -> sparse embeddings."""
        sparse, _ = self.model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        return sparse


def check_against_reference(
    model: Sam, features: torch.Tensor, sparse: torch.Tensor, multimask_only: bool = False
) -> tuple[float, float]:
    """Max |difference| of (low-res logits, IoU) between this decoder and the model's."""
    fd = FastPointDecoder(model)
    fd.set_embedding(features)
    with torch.no_grad():
        tok, keys = fd.transformer(sparse, (1, 2, 3) if multimask_only else None)
        low = fd.masks(tok, keys)
        iou = fd.iou(tok)
        pe = model.prompt_encoder
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, *fd.grid)
        ref_low, ref_iou = model.mask_decoder(features, pe.get_dense_pe(), sparse, dense, True)
    return float((low - ref_low).abs().max()), float((iou - ref_iou).abs().max())


__all__ = ["FastPointDecoder", "check_against_reference"]
