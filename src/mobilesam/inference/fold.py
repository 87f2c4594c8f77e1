"""BatchNorm folding: TinyViT's ``Conv2dBN`` blocks, and a convolution followed by a
BatchNorm in a ``Sequential`` (the ViT's convolutional stem), become one convolution with a bias.

In eval mode ``bn(conv(x))`` is an affine function of ``conv(x)``, so its scale
and shift fold into the convolution's weights and bias. The fold is computed in
float64 and rounded once, which keeps it within the float32 parity tolerances.
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling import tiny_vit as tv


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
    """Fold every TinyViT ``Conv2dBN`` and every Conv2d -> BatchNorm2d pair of a ``Sequential``
    in ``module`` (in place, the BatchNorm becoming an identity); returns the count."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, tv.Conv2dBN):
                setattr(parent, name, fold_conv_bn(child.c, child.bn))
                count += 1
        if isinstance(parent, nn.Sequential) and not isinstance(parent, tv.Conv2dBN):
            layers = list(parent)
            for i in range(len(layers) - 1):
                conv, bn = layers[i], layers[i + 1]
                if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d:
                    parent[i], parent[i + 1] = fold_conv_bn(conv, bn), nn.Identity()
                    count += 1
    return count
