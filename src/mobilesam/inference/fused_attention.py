"""Attention through ``F.scaled_dot_product_attention`` (one fused kernel), for inference.

:func:`use_fused_attention` replaces TinyViT's window attention and the two-way
transformer's attention with modules that wrap the original (its weights are
shared, not copied) and compute the same function with PyTorch's fused kernel:
the same scale, TinyViT's relative-position bias gathered once into a buffer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import tiny_vit as tv
from ..modeling import transformer as tr


class FusedTinyViTAttention(nn.Module):
    """TinyViT window attention with SDPA; the bias is gathered once (inference only)."""

    bias: torch.Tensor

    def __init__(self, attn: tv.Attention) -> None:
        super().__init__()
        self.attn = attn
        gathered = attn.attention_biases[:, attn.attention_bias_idxs].detach().clone()
        self.register_buffer("bias", gathered, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn
        b, n, _ = x.shape
        x = a.norm(x)
        qkv = a.qkv(x).view(b, n, a.num_heads, -1)
        q, k, v = qkv.split([a.head_dim] * 3, dim=3)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias, scale=a.scale)
        return a.proj(out.transpose(1, 2).reshape(b, n, -1))


class FusedDecoderAttention(nn.Module):
    """The two-way transformer's attention with SDPA (same 1/sqrt(d) scale)."""

    def __init__(self, attn: tr.Attention) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        a = self.attn
        q = a._split(a.q_proj(q))
        k = a._split(a.k_proj(k))
        v = a._split(a.v_proj(v))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(q.shape[-1]))
        b, h, n, c = out.shape
        return a.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


def use_fused_attention(module: nn.Module) -> int:
    """Wrap TinyViT and two-way-transformer attention in their SDPA forms (in place).

    Returns how many modules were replaced.
    """
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is tv.Attention:
                setattr(parent, name, FusedTinyViTAttention(child))
                count += 1
            elif type(child) is tr.Attention:
                setattr(parent, name, FusedDecoderAttention(child))
                count += 1
    return count
