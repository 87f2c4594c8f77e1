"""Export a Sam model to ONNX (encoder + SAM-compatible decoder), quantise, validate.

    from mobilesam.export.onnx import export_onnx
    result = export_onnx(model, "out/", quantize="int8")   # raises ExportValidationError

Writes ``encoder.onnx`` and ``decoder.onnx`` (and ``*.int8.onnx`` with
``quantize="int8"``) plus ``export.json`` (model numbers, files, measured
differences). The graphs carry their preprocessing numbers as ONNX metadata, so
:class:`mobilesam.runtime.OnnxPredictor` needs nothing but the two files.
Graph inputs and outputs are documented in :mod:`mobilesam.export.graphs`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..inference.masks import mask_iou as mask_iou_of
from ..modeling import Sam
from .graphs import DecoderOnnxModel, EncoderOnnxModel

ENCODER_INPUTS = ("image",)
ENCODER_OUTPUTS = ("image_embeddings",)
DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")


@dataclass(frozen=True)
class Tolerances:
    """Largest accepted |onnxruntime - torch| per output (absolute).

    fp32 defaults: about 10x the float32 reordering noise (on the generated vit_t
    weights onnxruntime differs from torch by ~2e-6 on the embedding and ~4e-5
    on the low-res logits, inside the parity tolerances 1.3e-5 / 1.4e-4; see
    docs/onnx.md). int8 changes the function itself, so it is only judged
    by ``int8_min_mask_iou``, the least IoU between the torch model's binary
    multimask outputs and the quantised graphs': a sanity floor that catches a
    broken quantisation, not a fidelity claim (the measured value is reported).
    """

    embedding: float = 1e-4
    low_res_logits: float = 1e-3
    iou_predictions: float = 1e-4
    min_mask_iou: float = 0.999
    int8_min_mask_iou: float = 0.7


class ExportValidationError(RuntimeError):
    """An exported graph disagrees with the PyTorch model beyond the tolerances."""


@dataclass
class GraphCheck:
    """Differences between one pair of exported graphs and the PyTorch model."""

    name: str
    embedding_max_abs: float
    low_res_max_abs: float
    iou_max_abs: float
    mask_iou_min: float
    passed: bool
    problems: list[str] = field(default_factory=list)


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, Path]
    checks: list[GraphCheck]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "files": {k: str(v.name) for k, v in self.files.items()},
            "checks": [asdict(c) for c in self.checks],
            "seconds": round(self.seconds, 1),
        }


def _metadata(model: Sam) -> dict[str, str]:
    config = getattr(model, "config", None)
    return {
        "mobilesam.image_size": str(model.image_size),
        "mobilesam.pixel_mean": json.dumps([float(v) for v in model.pixel_mean.flatten()]),
        "mobilesam.pixel_std": json.dumps([float(v) for v in model.pixel_std.flatten()]),
        "mobilesam.mask_threshold": str(float(model.mask_threshold)),
        "mobilesam.image_format": model.image_format,
        "mobilesam.mask_input_size": str(model.prompt_encoder.mask_input_size[0]),
        "mobilesam.model": getattr(config, "name", "unknown"),
    }


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    dynamic_shapes: dict[str, Any] | None,
    verbose: bool,
) -> None:
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    if not verbose:  # e.g. "torchvision is not installed. Skipping torchvision::nms"
        onnx_log.setLevel(logging.ERROR)
    try:
        with sink, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                args,
                str(path),
                dynamo=True,
                external_data=False,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=dynamic_shapes,
                verbose=verbose,
            )
    finally:
        onnx_log.setLevel(level)


def encoder_example(model: Sam) -> tuple[torch.Tensor]:
    s = model.image_size
    return (torch.rand(1, 3, s, s) * 255,)


def decoder_example(model: Sam, batch: int = 2, points: int = 3) -> tuple[torch.Tensor, ...]:
    """Example decoder inputs; batch and points > 1 so the exporter keeps them symbolic."""
    g = model.prompt_encoder.image_embedding_size
    m = model.prompt_encoder.mask_input_size
    s = model.image_size
    labels = torch.tensor([1.0, 0.0, -1.0, 2.0, 3.0])[:points].repeat(batch, 1)
    return (
        torch.randn(1, model.prompt_encoder.embed_dim, *g),
        torch.rand(batch, points, 2) * s,
        labels,
        torch.randn(1, 1, *m),
        torch.ones(1),
        torch.tensor([0.75 * s, float(s)]),
    )


def export_encoder(model: Sam, path: str | Path, verbose: bool = False) -> Path:
    """Write the normalisation + image encoder graph (input 1x3xSxS, see graphs.py)."""
    path = Path(path)
    _export(
        EncoderOnnxModel(model),
        encoder_example(model),
        path,
        ENCODER_INPUTS,
        ENCODER_OUTPUTS,
        None,
        verbose,
    )
    _set_metadata(path, {**_metadata(model), "mobilesam.graph": "encoder"})
    return path


def export_decoder(
    model: Sam, path: str | Path, return_single_mask: bool = False, verbose: bool = False
) -> Path:
    """Write the SAM-ONNX-compatible decoder graph (dynamic batch and number of points)."""
    path = Path(path)
    batch = torch.export.Dim("batch")
    points = torch.export.Dim("num_points")
    dynamic = {name: None for name in DECODER_INPUTS}
    dynamic["point_coords"] = {0: batch, 1: points}
    dynamic["point_labels"] = {0: batch, 1: points}
    _export(
        DecoderOnnxModel(model, return_single_mask),
        decoder_example(model),
        path,
        DECODER_INPUTS,
        DECODER_OUTPUTS,
        dynamic,
        verbose,
    )
    meta = {
        **_metadata(model),
        "mobilesam.graph": "decoder",
        "mobilesam.return_single_mask": str(return_single_mask).lower(),
    }
    _set_metadata(path, meta)
    return path


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Silence onnxruntime's quantiser (it logs a pre-processing hint as a warning and prints)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantisation of MatMul/Gemm weights (QUInt8).

    Unsigned 8-bit because this CPU family has no VNNI: signed int8 weights
    lost far more accuracy here, and quantising convolutions made it slower.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    with quiet_quantizer():
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QUInt8,
        )
    return dst


def check_graphs(
    model: Sam,
    encoder_path: str | Path,
    decoder_path: str | Path,
    image: np.ndarray | None = None,
    name: str = "fp32",
    tolerances: Tolerances | None = None,
    int8: bool = False,
) -> GraphCheck:
    """Run both graphs in onnxruntime and the torch model on the same prompts; compare.

    ``image`` (HxWx3 uint8) defaults to a smooth synthetic picture. Prompts: one
    point, two points, a box, a box plus a point, and a mask input.
    """
    from ..inference.predictor import SamPredictor
    from ..runtime import OnnxPredictor

    tol = tolerances or Tolerances()
    if image is None:
        image = synthetic_image(int(model.image_size * 0.75), model.image_size)
    h, w = image.shape[:2]
    torch_pred = SamPredictor(model)
    onnx_pred = OnnxPredictor(encoder_path, decoder_path)
    torch_pred.set_image(image)
    onnx_pred.set_image(image)
    emb_t = torch_pred.get_image_embedding().cpu().numpy()
    emb_o = onnx_pred.get_image_embedding()
    emb_diff = float(np.abs(emb_t - emb_o).max())

    prompts: list[dict[str, Any]] = [
        {"point_coords": np.array([[w * 0.5, h * 0.5]]), "point_labels": np.array([1])},
        {
            "point_coords": np.array([[w * 0.3, h * 0.6], [w * 0.7, h * 0.2]]),
            "point_labels": np.array([1, 0]),
        },
        {"box": np.array([w * 0.2, h * 0.25, w * 0.8, h * 0.9])},
        {
            "box": np.array([w * 0.1, h * 0.1, w * 0.6, h * 0.7]),
            "point_coords": np.array([[w * 0.4, h * 0.4]]),
            "point_labels": np.array([1]),
        },
    ]
    low_diff = iou_diff = 0.0
    mask_iou = 1.0
    previous = None
    for i, prompt in enumerate(prompts + [dict(prompts[0])]):
        if i == len(prompts):  # feed the first prompt's low-res output back
            prompt["mask_input"] = previous
        mt, it, lt = torch_pred.predict(**prompt, multimask_output=True)
        # Both sides get the same torch mask input so differences do not compound.
        mo, io_, lo = onnx_pred.predict(**prompt, multimask_output=True)
        if previous is None:
            previous = lt[np.argmax(it)][None]
        low_diff = max(low_diff, float(np.abs(lt - lo).max()))
        iou_diff = max(iou_diff, float(np.abs(it - io_).max()))
        mask_iou = min(mask_iou, min(mask_iou_of(a, b) for a, b in zip(mt, mo)))

    problems = []
    if int8:
        if mask_iou < tol.int8_min_mask_iou:
            problems.append(f"mask IoU {mask_iou:.4f} < {tol.int8_min_mask_iou}")
    else:
        for label, value, limit in (
            ("embedding", emb_diff, tol.embedding),
            ("low-res logits", low_diff, tol.low_res_logits),
            ("IoU predictions", iou_diff, tol.iou_predictions),
        ):
            if value > limit:
                problems.append(f"{label} max |diff| {value:.3g} > {limit:.3g}")
        if mask_iou < tol.min_mask_iou:
            problems.append(f"mask IoU {mask_iou:.5f} < {tol.min_mask_iou}")
    return GraphCheck(name, emb_diff, low_diff, iou_diff, mask_iou, not problems, problems)


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth HxWx3 uint8 test picture: gradients plus a few soft discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (h + w) * 120], axis=-1) + 30
    for _ in range(4):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        r = rng.uniform(0.08, 0.25) * min(h, w)
        disc = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - disc) + rng.uniform(0, 255, 3) * disc
    return np.clip(img, 0, 255).astype(np.uint8)


def export_onnx(
    model: Sam,
    out_dir: str | Path,
    quantize: str | None = None,
    validate: bool = True,
    single_mask_decoder: bool = False,
    image: np.ndarray | None = None,
    tolerances: Tolerances | None = None,
    verbose: bool = False,
) -> ExportResult:
    """Export, optionally quantise, and (by default) validate against ``model``.

    Raises :class:`ExportValidationError` when a graph is off by more than the
    tolerances; the files stay on disk for inspection.
    """
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    start = time.perf_counter()
    model = model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "encoder": export_encoder(model, out / "encoder.onnx", verbose),
        "decoder": export_decoder(model, out / "decoder.onnx", verbose=verbose),
    }
    if single_mask_decoder:
        files["decoder_single_mask"] = export_decoder(
            model, out / "decoder_single_mask.onnx", return_single_mask=True, verbose=verbose
        )
    if quantize == "int8":
        files["encoder_int8"] = quantize_int8(files["encoder"], out / "encoder.int8.onnx")
        files["decoder_int8"] = quantize_int8(files["decoder"], out / "decoder.int8.onnx")
    checks: list[GraphCheck] = []
    if validate:
        checks.append(
            check_graphs(model, files["encoder"], files["decoder"], image, "fp32", tolerances)
        )
        if quantize == "int8":
            checks.append(
                check_graphs(
                    model,
                    files["encoder_int8"],
                    files["decoder_int8"],
                    image,
                    "int8",
                    tolerances,
                    int8=True,
                )
            )
    result = ExportResult(out, files, checks, time.perf_counter() - start)
    report = {"model": _metadata(model), **result.to_json()}
    (out / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    failed = [c for c in checks if not c.passed]
    if failed:
        lines = [f"{c.name}: " + "; ".join(c.problems) for c in failed]
        raise ExportValidationError(
            "exported graphs disagree with the PyTorch model:\n  " + "\n  ".join(lines)
        )
    return result
