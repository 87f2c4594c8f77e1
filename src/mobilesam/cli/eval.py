"""``mobilesam eval``: alignment mIoU of a model against a reference model and/or ground truth.

Works on any image folder. A model is given as a ``.safetensors`` file that records its
config, as ``NAME=WEIGHTS`` (registered architecture plus a weights file), or as
``shapes_teacher`` / ``shapes_student`` (the shipped shapes-world models);
:func:`parse_model_spec` turns the form into a name and a file, and
:func:`mobilesam.loading.load_model` loads it. Ground truth
is a folder of ``<image stem>.npz`` files with a ``masks`` array (NxHxW bool), the layout
``scripts/shapes_world.py`` writes; the protocol is described in
:mod:`mobilesam.evaluation.alignment`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._common import fail


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="mIoU of a model's masks against a reference model's masks and/or ground truth",
        description="Alignment evaluation (the paper's protocols): one point at the mask "
        "centre, a box, two points (fg + bg) at given distances. Masks are compared at the "
        "original image resolution.",
    )
    p.add_argument("--model", required=True, help="model A: .safetensors, NAME=WEIGHTS or a "
                   "shipped shapes model (shapes_teacher, shapes_student)")  # fmt: skip
    p.add_argument("--reference", default=None, help="reference model B (same forms as --model)")
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument("--gt", default=None, help="folder of <stem>.npz ground-truth masks")
    p.add_argument("--protocols", nargs="+", default=["point", "box", "two_points"],
                   choices=["point", "box", "two_points"])  # fmt: skip
    p.add_argument("--distances", nargs="+", type=float, default=[100, 200, 300, 400, 500],
                   help="two-point distances in pixels of a --distance-frame image")  # fmt: skip
    p.add_argument("--distance-frame", type=int, default=1024,
                   help="long side the distances refer to; each image scales them by its "
                   "long side / this (0: use them as given)")  # fmt: skip
    p.add_argument("--grid", type=int, default=4,
                   help="without --gt: B is prompted on a grid x grid lattice to find "
                   "objects")  # fmt: skip
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N images")
    p.add_argument("--json", default=None, help="write the result as JSON to this file")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_model_spec(spec: str) -> tuple[str | None, Path]:
    """``(model name or None, weights file)`` for ``--model``'s forms (see the module
    docstring); ``None``: the file records its config. Raises ``ModelLoadError``."""
    from ..loading import ModelLoadError
    from ..training.assets import SHIPPED, shipped_checkpoint

    if spec in SHIPPED:
        try:
            return None, shipped_checkpoint(spec)
        except FileNotFoundError as e:
            raise ModelLoadError(str(e)) from None
    if "=" in spec and not Path(spec).exists():
        name, weights = spec.split("=", 1)
        return name, Path(weights)
    path = Path(spec)
    if not path.is_file():
        raise ModelLoadError(
            f"{spec}: not a file, not NAME=WEIGHTS and not a shipped model ({', '.join(SHIPPED)})"
        )
    if path.suffix != ".safetensors":  # only mobilesam's .safetensors record their config
        raise ModelLoadError(f"{spec}: the file does not record its config; use NAME={spec}")
    return None, path


def load_model_spec(spec: str, device: str = "cpu"):
    """The model ``--model`` / ``--reference`` names, through the one loader."""
    from ..loading import load_model

    name, weights = parse_model_spec(spec)
    return load_model(name, weights, device=device)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.alignment import (
        EvalConfig,
        evaluate_alignment,
        format_table,
        iter_image_folder,
        load_items,
    )

    if args.reference is None and args.gt is None:
        return fail("give --reference (a model) and/or --gt (a ground-truth folder)")
    if args.gt is not None and not Path(args.gt).is_dir():
        return fail(f"{args.gt}: ground-truth folder not found")
    try:
        cfg = EvalConfig(
            protocols=tuple(args.protocols),
            distances=tuple(args.distances),
            distance_frame=args.distance_frame,
            grid=args.grid,
        )
        items = iter_image_folder(args.images, args.gt, args.limit or None)
        if not items:
            return fail(f"{args.images}: no images found")
        if args.reference is None:
            missing = [k for k, _, g in items if g is None]
            if missing:
                return fail(f"no ground truth for {len(missing)} images (first: {missing[0]})")
        model = load_model_spec(args.model, args.device)
        reference = load_model_spec(args.reference, args.device) if args.reference else None
        result = evaluate_alignment(
            model, load_items(items), reference, cfg, progress=not args.no_progress,
            total=len(items),
        )  # fmt: skip
    except (FileNotFoundError, ValueError, KeyError) as e:  # ModelLoadError is a ValueError
        return fail(str(e).strip("'\""))
    result["model"] = args.model
    result["reference"] = args.reference
    result["gt"] = args.gt
    print(format_table(result, ("A", "B")))
    if args.json:
        from ..io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
