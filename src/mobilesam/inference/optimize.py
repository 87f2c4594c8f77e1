"""Inference-only optimised copies of a model that keep the outputs within tolerance.

    from mobilesam.inference.optimize import optimize_model
    fast_model = optimize_model(model)     # the original is left as it is

:func:`optimize_model` returns an optimised *copy* (so the original can still be
trained or compared against), applying what :class:`OptimizeConfig` selects:

- BatchNorm folded into the preceding convolution (:mod:`.fold`);
- attention through ``F.scaled_dot_product_attention`` (:mod:`.fused_attention`);
- optionally channels-last memory format and ``torch.compile`` (inductor).

These compute the same functions in another order, so they stay within the
float32 parity tolerances (embedding 1.3e-5); ``torch.compile`` may fuse
further and is reported separately by the benchmark. The predictor built on
such a copy is :class:`mobilesam.inference.fast_predictor.FastPredictor`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch

from ..modeling import Sam
from .fold import fold_batchnorm
from .fused_attention import use_fused_attention


@dataclass(frozen=True)
class OptimizeConfig:
    """Which optimisations :func:`optimize_model` applies."""

    fold_batchnorm: bool = True
    fused_attention: bool = True
    channels_last: bool = False
    compile: bool = False
    num_threads: int | None = None


def set_threads(num_threads: int | None) -> int:
    """Set torch's intra-op threads (default: the usable cores); returns the value."""
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
