"""``mobilesam export onnx``: encoder + SAM-compatible decoder graphs, validated."""

from __future__ import annotations

import argparse

from ._common import add_model_args, fail, load_model


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="export the model for other runtimes (ONNX)",
        description="Export the image encoder (with its normalisation) and the prompt "
        "encoder + mask decoder (SAM's ONNX signature) as ONNX graphs, then check them "
        "in onnxruntime against the PyTorch model.",
    )
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    o = formats.add_parser(
        "onnx",
        help="encoder.onnx + decoder.onnx (+ int8 versions)",
        description="Writes encoder.onnx, decoder.onnx, optionally *.int8.onnx and "
        "decoder_single_mask.onnx, and export.json with the measured differences. "
        "Exits with status 1 if a graph disagrees with PyTorch beyond the tolerances.",
    )
    add_model_args(o)
    o.add_argument("--out", required=True, help="output folder")
    o.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="also write dynamic-int8 (uint8 MatMul/Gemm weights) graphs",
    )
    o.add_argument(
        "--single-mask",
        action="store_true",
        help="also write decoder_single_mask.onnx, which returns one best mask per prompt "
        "(what SAM's web demo loads)",
    )
    o.add_argument("--no-validate", action="store_true", help="skip the onnxruntime-vs-torch check")
    o.add_argument("--verbose", action="store_true", help="show the exporter's output")
    return p


def run(args: argparse.Namespace) -> int:
    from ..export.onnx import ExportValidationError, export_onnx
    from ..loading import ModelLoadError

    if args.device != "cpu":
        return fail("ONNX export runs on the CPU; drop --device")
    try:
        model = load_model(args)
    except ModelLoadError as e:
        return fail(str(e))
    print(f"exporting {args.model} to {args.out} ...")
    try:
        result = export_onnx(
            model,
            args.out,
            quantize=args.quantize,
            validate=not args.no_validate,
            single_mask_decoder=args.single_mask,
            verbose=args.verbose,
        )
    except ExportValidationError as e:
        print(f"mobilesam: error: {e}")
        return 1
    for kind, path in result.files.items():
        size = path.stat().st_size / 2**20
        print(f"  {kind:20s} {path}  ({size:.1f} MB)")
    for c in result.checks:
        print(
            f"  check {c.name}: embedding max|diff| {c.embedding_max_abs:.2g}, low-res logits "
            f"{c.low_res_max_abs:.2g}, IoU pred {c.iou_max_abs:.2g}, mask IoU min "
            f"{c.mask_iou_min:.4f} -> {'ok' if c.passed else 'FAILED'}"
        )
    print(f"done in {result.seconds:.0f} s; details in {result.out_dir / 'export.json'}")
    return 0
