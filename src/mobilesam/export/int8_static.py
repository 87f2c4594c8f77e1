"""Calibrated static int8 quantisation of ``encoder.onnx`` (QDQ, per-channel weights).

    from mobilesam.export.int8_static import quantize_int8_static
    quantize_int8_static("out/encoder.onnx", "out/encoder.int8s.onnx", photos)

Unlike :func:`mobilesam.export.onnx.quantize_int8` (dynamic: activation ranges
found at run time, MatMul weights only), activation ranges are fixed in
advance from the encoder's activations on real photos, so convolutions can run
in int8 too. Quantise-dequantise pairs (QDQ) around the Conv and MatMul inputs
let the runtime fuse them into int8 kernels (VNNI where the CPU has it).

Kept in float (:func:`float_nodes`): the first convolution (it sees raw
pixels, and its error reaches everything after it), the products of two
activations inside attention (q·kᵀ before the softmax and attn·v: their
ranges change from image to image) and the neck (the last convolutions,
whose output *is* the embedding the decoder reads).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

QUANTIZED_OPS = ("Conv", "MatMul")


def float_nodes(model_path: str | Path, neck_convs: int = 2, first_convs: int = 1) -> list[str]:
    """Names of the encoder nodes to keep in float (see the module docstring)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    # constants folded into Constant nodes count as weights too
    weights |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    keep = convs[:first_convs] + (convs[-neck_convs:] if neck_convs else [])
    keep += [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and not any(i in weights for i in n.input)
    ]
    return keep


class _Photos:
    """onnxruntime's CalibrationDataReader protocol over the encoder inputs of some photos."""

    def __init__(self, model_path: str | Path, images: Sequence[np.ndarray]) -> None:
        from ..inference.transforms import ResizeLongestSide
        from ..runtime.onnx_backend import OnnxEncoder

        encoder = OnnxEncoder(model_path, num_threads=None)
        resize = ResizeLongestSide(encoder.image_size)
        canvases = [encoder.canvas(resize.apply_image(im)) for im in images]
        self._items: Iterator[dict[str, np.ndarray]] = iter({"image": c} for c in canvases)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_int8_static(
    src: str | Path,
    dst: str | Path,
    images: Sequence[np.ndarray],
    exclude: Sequence[str] | None = None,
    method: str = "minmax",
    reduce_range: bool | None = None,
) -> Path:
    """QDQ int8 copy of the encoder graph ``src`` at ``dst``, calibrated on ``images``.

    images: HxWx3 uint8 RGB photos (a handful is enough: ranges, not
    weights, are estimated). exclude: node names kept in float (default
    :func:`float_nodes`). method: ``"minmax"`` or ``"percentile"`` (99.999%,
    clips rare outliers) activation calibration. Weights are signed int8 per
    output channel, activations unsigned int8 per tensor.

    reduce_range: quantise weights to 7 bits. ``None`` decides by the CPU: without
    int8 dot-product instructions (VNNI) onnxruntime's uint8 x int8 kernels add pairs
    of products in 16 bits, which saturates with full-range weights (on an AVX2-only
    CPU the masks fell to IoU 0.58 against fp32); 7-bit weights cannot overflow there.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from .onnx import quiet_quantizer

    if len(images) == 0:
        raise ValueError("static quantisation needs at least one calibration image")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"method must be one of {sorted(methods)}, got {method!r}")
    if reduce_range is None:
        from ..backends.cpu import has_int8_dot

        reduce_range = not has_int8_dot()
    dst = Path(dst)
    with quiet_quantizer():
        quantize_static(
            str(src),
            str(dst),
            _Photos(src, images),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=list(float_nodes(src) if exclude is None else exclude),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
            calibrate_method=methods[method],
            extra_options={"CalibPercentile": 99.999},
        )
    return dst
