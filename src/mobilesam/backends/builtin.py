"""The built-in backends: PyTorch (exact, optimised, bf16), onnxruntime and OpenVINO.

The ONNX-based backends share the exported graphs (``encoder.onnx`` +
``decoder.onnx``, made once by :func:`export_graphs`); quantised backends add
their own encoder file beside them. bf16 backends check for native bf16 (see
:mod:`.cpu`): emulated bf16 is slower than float32.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .cpu import needs_native_bf16
from .registry import BackendSpec, LoadContext, register_backend

ONNX_GRAPHS = ("encoder.onnx", "decoder.onnx")


def _needs(*modules: str) -> str | None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def _needs_bf16(*modules: str) -> str | None:
    return _needs(*modules) or needs_native_bf16()


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


def _torch_bf16(ctx: LoadContext) -> tuple[Any, Any]:
    # The decoder stays float32: under autocast its masks fell to IoU mean 0.977 / min 0.94
    # against the exact path (vit_t, dog.jpg, 64 points), under the faithful bar, for a
    # decoder that is a small part of the time.
    from ..inference.bf16 import Bf16Encoder
    from ..inference.fast_predictor import FastTorchDecoder
    from ..inference.optimize import optimize_model

    model = optimize_model(ctx.model())
    return Bf16Encoder(model), FastTorchDecoder(model)


def export_graphs(ctx: LoadContext) -> None:
    """``encoder.onnx`` + ``decoder.onnx`` (fp32, checked against torch) into the artifacts."""
    from ..export.onnx import export_onnx

    export_onnx(ctx.model(), ctx.artifacts)


def _export_missing_graphs(ctx: LoadContext) -> None:
    if not all((ctx.artifacts / f).is_file() for f in ONNX_GRAPHS):
        export_graphs(ctx)


def _ort_fp32(ctx: LoadContext) -> tuple[Any, Any]:
    from ..runtime.onnx_backend import OnnxDecoder, OnnxEncoder

    enc = OnnxEncoder(ctx.artifacts / "encoder.onnx", ctx.threads)
    dec = OnnxDecoder(
        ctx.artifacts / "decoder.onnx", ctx.threads, enc.mask_threshold, enc.mask_input_size
    )
    return enc, dec


NUMPY_DECODER = "decoder.safetensors"
OPENVINO_ARTIFACTS = ("encoder.onnx", NUMPY_DECODER)


def _export_openvino(ctx: LoadContext) -> None:
    """The exported graphs unless made already (OpenVINO reads ``encoder.onnx``) and the
    numpy decoder's weights."""
    from ..export.numpy_weights import save_decoder_weights

    _export_missing_graphs(ctx)
    save_decoder_weights(ctx.model(), ctx.artifacts / NUMPY_DECODER)


def _openvino(precision: str) -> Any:
    # The decoder is the numpy one (mobilesam.runtime.numpy_decoder), float32 at any
    # encoder precision. OpenVINO's own decoder was slower to start (compiling the
    # dynamic-shape graph), and in bf16 it also rounds the graph's size arithmetic
    # (orig_im_size 534 -> 536 rows: masks of the wrong shape); onnxruntime's cost a
    # one-click process ~0.15 s in importing it, building the session and a first call.
    #
    # The two load at once: OpenVINO imports the encoder's compiled blob (~0.17 s, in a
    # helper thread, releasing the GIL) while this thread reads the decoder's weights.
    # The modules are imported here first: importing inside the helper thread can
    # deadlock on the import lock.
    def load(ctx: LoadContext) -> tuple[Any, Any]:
        from concurrent.futures import ThreadPoolExecutor

        from ..runtime.numpy_decoder import NumpyDecoder
        from ..runtime.openvino_backend import OpenVinoEncoder

        cache = ctx.artifacts / "openvino-cache"  # compiled blobs, keyed by OpenVINO itself
        path = ctx.artifacts / "encoder.onnx"
        with ThreadPoolExecutor(1, thread_name_prefix="mobilesam-load") as pool:
            encoder = pool.submit(OpenVinoEncoder, path, precision, ctx.threads, cache)
            dec = NumpyDecoder.from_file(ctx.artifacts / NUMPY_DECODER)
            enc = encoder.result()  # raises the encoder's error, if any
        return enc, dec

    return load


def _quantize_dynamic(ctx: LoadContext) -> None:
    from ..export.onnx import quantize_int8

    _export_missing_graphs(ctx)
    for part in ("encoder", "decoder"):
        quantize_int8(ctx.artifacts / f"{part}.onnx", ctx.artifacts / f"{part}.int8.onnx")


def _ort_int8(ctx: LoadContext) -> tuple[Any, Any]:
    from ..runtime.onnx_backend import OnnxDecoder, OnnxEncoder

    enc = OnnxEncoder(ctx.artifacts / "encoder.int8.onnx", ctx.threads)
    dec = OnnxDecoder(
        ctx.artifacts / "decoder.int8.onnx", ctx.threads, enc.mask_threshold, enc.mask_input_size
    )
    return enc, dec


STATIC_INT8_ENCODER = "encoder.int8s.onnx"


def _quantize_static(ctx: LoadContext) -> None:
    """Calibrate on ``ctx.options["calibration_images"]`` (HxWx3 uint8) or the example photos."""
    from ..export.int8_static import quantize_int8_static
    from .fidelity import example_photos

    _export_missing_graphs(ctx)
    images = ctx.options.get("calibration_images") or example_photos()
    quantize_int8_static(
        ctx.artifacts / "encoder.onnx", ctx.artifacts / STATIC_INT8_ENCODER, images
    )


def _ort_int8_static(ctx: LoadContext) -> tuple[Any, Any]:
    from ..runtime.onnx_backend import OnnxDecoder, OnnxEncoder

    enc = OnnxEncoder(ctx.artifacts / STATIC_INT8_ENCODER, ctx.threads)
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
register_backend(
    BackendSpec(
        name="torch-bf16",
        description="torch-optimised with the encoder under bf16 autocast (decoder float32)",
        precision="bf16",
        needs_torch=True,
        check=lambda: _needs_bf16("torch"),
        load=_torch_bf16,
    )
)
register_backend(
    BackendSpec(
        name="openvino-fp32",
        description="OpenVINO float32 encoder (INFERENCE_PRECISION_HINT f32), numpy decoder",
        precision="fp32",
        needs_torch=False,
        check=lambda: _needs("openvino"),
        load=_openvino("fp32"),
        artifacts=OPENVINO_ARTIFACTS,
        convert=_export_openvino,
    )
)
register_backend(
    BackendSpec(
        name="openvino-bf16",
        description="OpenVINO bf16 encoder (the exported graph), numpy float32 decoder",
        precision="bf16",
        needs_torch=False,
        check=lambda: _needs_bf16("openvino"),
        load=_openvino("bf16"),
        artifacts=OPENVINO_ARTIFACTS,
        convert=_export_openvino,
    )
)
register_backend(
    BackendSpec(
        name="ort-int8",
        description="onnxruntime, MatMul/Gemm weights dynamic-quantised to uint8 (both graphs)",
        precision="int8",
        needs_torch=False,
        check=lambda: _needs("onnxruntime"),
        load=_ort_int8,
        artifacts=("encoder.int8.onnx", "decoder.int8.onnx"),
        convert=_quantize_dynamic,
    )
)
register_backend(
    BackendSpec(
        name="ort-int8-static",
        description="onnxruntime, encoder QDQ int8 calibrated on photos (per-channel weights; "
        "first conv, attention products and neck in float), decoder float32",
        precision="int8",
        needs_torch=False,
        check=lambda: _needs("onnxruntime"),
        load=_ort_int8_static,
        artifacts=(STATIC_INT8_ENCODER, "decoder.onnx"),
        convert=_quantize_static,
    )
)
