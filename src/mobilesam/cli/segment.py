"""``mobilesam segment``: masks for point / box prompts on one image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._common import add_backend_args, add_model_args, fail, load_predictor

# One image, then done: the program ends without unloading the runtimes (see cli.entry).
QUICK_EXIT = True


def _floats(text: str, n_min: int, n_max: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{what} must be comma-separated numbers: {text!r}"
        ) from None
    if not n_min <= len(vals) <= n_max:
        raise argparse.ArgumentTypeError(f"{what} needs {n_min}-{n_max} numbers, got {text!r}")
    return vals


def _point(text: str) -> tuple[float, float, int]:
    vals = _floats(text, 2, 3, "--point X,Y[,LABEL]")
    label = vals[2] if len(vals) == 3 else 1.0
    if label not in (0.0, 1.0):
        raise argparse.ArgumentTypeError(
            f"point label must be 1 (object) or 0 (background): {text!r}"
        )
    return vals[0], vals[1], int(label)


def _box(text: str) -> list[float]:
    return _floats(text, 4, 4, "--box X0,Y0,X1,Y1")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "segment",
        help="segment the object at points / in a box",
        description="Predict a mask from point and/or box prompts. Writes the best mask as PNG, "
        "optionally an overlay picture, and prints scores as JSON.",
    )
    p.add_argument("image", help="input image file")
    p.add_argument(
        "--point",
        type=_point,
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="prompt point in pixels; LABEL 1 = object (default), 0 = background; repeatable",
    )
    p.add_argument("--box", type=_box, default=None, metavar="X0,Y0,X1,Y1", help="prompt box")
    p.add_argument("--multimask", action="store_true", help="predict 3 masks, keep the best")
    p.add_argument("--out", required=True, help="output mask, *.png (0/255)")
    p.add_argument(
        "--overlay",
        default=None,
        help="also write mask + prompts over the photo (*.png, *.jpg, *.jpeg or *.webp)",
    )
    add_model_args(p)
    add_backend_args(p)
    return p


def _output_problem(args: argparse.Namespace) -> str | None:
    """Why ``--out`` / ``--overlay`` cannot be written as asked, or None."""
    from ..io import picture_format

    if Path(args.out).suffix.lower() != ".png":
        return f"--out {args.out}: the mask is written as PNG (lossless 0/255); name it *.png"
    if args.overlay:
        try:
            picture_format(args.overlay)  # what save_picture will ask of the name
        except ValueError as e:
            return f"--overlay {e}"
    return None


def _prompt_problem(args: argparse.Namespace, width: int, height: int) -> str | None:
    """A point outside the image, a box that misses it or has its corners swapped, or None.

    Checked before anything loads. The library takes prompts off the image as SAM does;
    the command refuses them, since a mask for them is almost never what was meant.
    """
    for x, y, _ in args.point:
        if not (0 <= x < width and 0 <= y < height):
            return (
                f"--point {x:g},{y:g} is outside the {width}x{height} image "
                f"(X in 0..{width - 1}, Y in 0..{height - 1})"
            )
    if args.box is not None:
        x0, y0, x1, y1 = args.box
        box = ",".join(f"{v:g}" for v in args.box)
        if x1 < x0 or y1 < y0:
            return f"--box {box} must be X0,Y0,X1,Y1 with X1 >= X0 and Y1 >= Y0"
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            return f"--box {box} misses the {width}x{height} image"
    return None


def run(args: argparse.Namespace) -> int:
    if not args.point and args.box is None:
        return fail("give at least one --point or a --box")
    problem = _output_problem(args)
    if problem:
        return fail(problem)
    import numpy as np

    from ..io import ImageReadError, read_image, save_picture, save_png
    from ..loading import ModelLoadError
    from ..visualize import draw_prompts, overlay_masks

    try:
        image = read_image(args.image)
    except ImageReadError as e:
        return fail(str(e))
    problem = _prompt_problem(args, image.shape[1], image.shape[0])
    if problem:
        return fail(problem)
    try:
        predictor = load_predictor(args)
    except ModelLoadError as e:
        return fail(str(e))
    if args.random_weights:
        print("mobilesam: warning: random weights: the masks are meaningless", file=sys.stderr)

    coords = np.array([[x, y] for x, y, _ in args.point], dtype=np.float64) if args.point else None
    labels = np.array([lab for _, _, lab in args.point], dtype=np.int64) if args.point else None
    box = np.array(args.box, dtype=np.float64) if args.box is not None else None
    predictor.set_image(image)
    try:
        masks, scores, _ = predictor.predict(
            point_coords=coords, point_labels=labels, box=box, multimask_output=args.multimask
        )
    except ValueError as e:
        return fail(str(e))
    best = int(np.argmax(scores))
    save_png(args.out, masks[best])
    if args.overlay:
        pic = overlay_masks(image, [masks[best]])
        save_picture(args.overlay, draw_prompts(pic, coords, labels, box))
    report = {
        "image": str(args.image),
        "model": args.model,
        "backend": predictor.backend,
        "size": [int(image.shape[0]), int(image.shape[1])],
        "best": best,
        "masks": [
            {"index": i, "score": round(float(s), 6), "area": int(m.sum())}
            for i, (s, m) in enumerate(zip(scores, masks))
        ],
        "out": str(Path(args.out)),
        "overlay": str(Path(args.overlay)) if args.overlay else None,
    }
    print(json.dumps(report, indent=2))
    return 0
