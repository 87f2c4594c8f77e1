"""The built-in backends: exact and optimised PyTorch, onnxruntime on the exported graphs."""

from __future__ import annotations

import importlib.util
from typing import Any

from .registry import BackendSpec, LoadContext, register_backend

ONNX_GRAPHS = ("encoder.onnx", "decoder.onnx")


def _needs(*modules: str) -> str | None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def _torch_exact(ctx: LoadContext) -> tuple[Any, Any]:
    from ..inference.torch_backend import TorchDecoder, TorchEncoder

    model = ctx.model()
    return TorchEncoder(model), TorchDecoder(model)


def _torch_optimised(ctx: LoadContext) -> tuple[Any, Any]:
    from ..inference.fast_predictor import FastTorchDecoder
    from ..inference.optimize import optimize_model
    from ..inference.torch_backend import TorchEncoder

    model = optimize_model(ctx.model())
    return TorchEncoder(model), FastTorchDecoder(model)


def export_graphs(ctx: LoadContext) -> None:
    """``encoder.onnx`` + ``decoder.onnx`` (fp32, checked against torch) into the artifacts."""
    from ..export.onnx import export_onnx

    export_onnx(ctx.model(), ctx.artifacts)


def _ort_fp32(ctx: LoadContext) -> tuple[Any, Any]:
    from ..runtime.onnx_backend import OnnxDecoder, OnnxEncoder

    enc = OnnxEncoder(ctx.artifacts / "encoder.onnx", ctx.threads)
    dec = OnnxDecoder(
        ctx.artifacts / "decoder.onnx", ctx.threads, enc.mask_threshold, enc.mask_input_size
    )
    return enc, dec


register_backend(
    BackendSpec(
        name="torch-exact",
        description="SamPredictor's path: eager float32 PyTorch (the parity reference)",
        precision="fp32",
        needs_torch=True,
        check=lambda: _needs("torch"),
        load=_torch_exact,
        exact=True,
    )
)
register_backend(
    BackendSpec(
        name="torch-optimised",
        description="BatchNorm folded, fused attention, shared-embedding decoder (float32)",
        precision="fp32",
        needs_torch=True,
        check=lambda: _needs("torch"),
        load=_torch_optimised,
    )
)
register_backend(
    BackendSpec(
        name="ort-fp32",
        description="onnxruntime float32 on the exported graphs",
        precision="fp32",
        needs_torch=False,
        check=lambda: _needs("onnxruntime"),
        load=_ort_fp32,
        artifacts=ONNX_GRAPHS,
        convert=export_graphs,
    )
)
