"""SAM's ViT image encoder (ViT-B/L/H): windowed + global attention, neck.

Attention uses decomposed relative positions (separate height and width
tables). Windowed blocks zero-pad the feature map *after* ``norm1`` and do
not mask the padding, as the reference does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d, MLPBlock


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """BxHxWxC -> (B*nWindows)x window x window x C, zero-padding H and W up to a multiple."""
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`, cropping the padding away."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous() if (hp > h or wp > w) else x


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings for every (query, key) pair along one axis.

    Returns a (q_size, k_size, C) tensor. The table is linearly resized when its
    length does not fit (other input sizes than the checkpoint was trained on).
    """
    length = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=length, mode="linear"
        )
        rel_pos = rel_pos.reshape(-1, length).permute(1, 0)
    q_coords = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    rel = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[rel.long()]


def resize_position_tables(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` with its ViT position tables resized to ``target``'s shapes.

    For starting a model of another input size from a checkpoint (a longer token grid):
    absolute embeddings (1xHxWxC) are resized bicubically as an image, relative tables
    ((2S-1)xC) linearly, as :func:`get_rel_pos` resizes them at run time. Every other
    entry, and every table that already fits, is returned as it is.
    """
    out = dict(state)
    for key, value in state.items():
        want = target.get(key)
        if want is None or want.shape == value.shape:
            continue
        if key.endswith("pos_embed") and value.dim() == 4:
            grid = F.interpolate(
                value.permute(0, 3, 1, 2), size=want.shape[1:3], mode="bicubic",
                align_corners=False,
            )  # fmt: skip
            out[key] = grid.permute(0, 2, 3, 1).contiguous()
        elif key.endswith(("rel_pos_h", "rel_pos_w")) and value.dim() == 2:
            line = F.interpolate(value.T[None], size=want.shape[0], mode="linear")
            out[key] = line[0].T.contiguous()
    return out


class Attention(nn.Module):
    """Multi-head attention on a BxHxWxC map with decomposed relative positions."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        use_rel_pos: bool,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.num_heads, h * w, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            rh = get_rel_pos(h, h, self.rel_pos_h)
            rw = get_rel_pos(w, w, self.rel_pos_w)
            # The relative terms use the unscaled queries.
            rq = q.reshape(q.shape[0], h, w, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", rq, rh)
            rel_w = torch.einsum("bhwc,wkc->bhwk", rq, rw)
            attn = attn.view(-1, h, w, h, w) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
            attn = attn.view(-1, h * w, h * w)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4)
        return self.proj(x.reshape(b, h, w, -1))


class Block(nn.Module):
    """Transformer block; ``window_size`` 0 means global attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        use_rel_pos: bool,
        window_size: int,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_size = input_size if window_size == 0 else (window_size, window_size)
        self.attn = Attention(dim, num_heads, qkv_bias, use_rel_pos, attn_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            x, padded = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, padded, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch convolution; returns BxHxWxC (channels last)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ConvStem(nn.Module):
    """Stride-2 3x3 convolutions down to the patch grid, then a 1x1 projection.

    A drop-in for :class:`PatchEmbed` (same BxHxWxC output) for ViTs trained from
    scratch: overlapping small filters learn edges far sooner than one large linear patch
    projection (Xiao et al. 2021, "Early convolutions help transformers see better").
    Widths double at each step and end at ``embed_dim``. BatchNorm, as in that paper: at
    training batch 8 it costs half of what a channel LayerNorm does on these large maps.
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        steps = patch_size.bit_length() - 1
        if patch_size < 2 or 1 << steps != patch_size:
            raise ValueError(
                f"a convolutional stem needs a power-of-two patch size, got {patch_size}"
            )
        layers: list[nn.Module] = []
        width_in = in_chans
        for i in range(steps):
            width = max(embed_dim >> (steps - 1 - i), 8)
            layers += [
                nn.Conv2d(width_in, width, 3, 2, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.GELU(),
            ]
            width_in = width
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(width_in, embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(x)).permute(0, 2, 3, 1)


STEMS: dict[str, type[nn.Module]] = {"patch": PatchEmbed, "conv": ConvStem}


class ImageEncoderViT(nn.Module):
    """Bx3xSxS image -> Bx256x(S/16)x(S/16) embedding (SAM ViT-B/L/H)."""

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
        stem: str = "patch",
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; stems: {', '.join(STEMS)}")
        self.patch_embed = STEMS[stem](patch_size, in_chans, embed_dim)
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, grid, grid, embed_dim)) if use_abs_pos else None
        )
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio,
                qkv_bias,
                use_rel_pos,
                0 if i in global_attn_indexes else window_size,
                (grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))
