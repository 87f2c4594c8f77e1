"""``mobilesam everything``: automatic masks for every image of a collection.

Per image, a folder ``OUT/<name>/`` with either one PNG per mask plus
``metadata.csv`` (``--format png``) or ``annotations.json`` with COCO RLE
segmentations (``--format coco``), and ``overlay.png``. Each folder is written
under a temporary name and renamed when complete (the whole folder is the unit of
completion, so this is done here rather than file by file with
:mod:`mobilesam.io`'s atomic writers), so an interrupted run leaves no
half-written result; images whose folder exists are skipped unless
``--overwrite``. Reading, segmenting and writing overlap
(:mod:`mobilesam.inference.everything_pipeline`; ``--sequential`` for one image
after another); the progress bar shows images/s and the time left, and the last
line the throughput. Images are read with :func:`mobilesam.io.read_image`; the model
and the image encoder's backend come from :mod:`mobilesam.backends` (``--backend``,
the fastest faithful one by default); the generator flags are derived from
:class:`~mobilesam.inference.amg_options.AmgOptions`. Under
``torchrun`` (RANK / WORLD_SIZE set) each process takes a disjoint shard of the
sorted inputs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..inference.amg_options import AmgOptions, option_fields
from ..inference.folder_options import FolderJob, PipelineOptions
from ._common import add_backend_args, add_model_args, fail, load_predictor


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "everything",
        help="automatic masks for whole images or folders",
        description="Segment everything in each image with the automatic mask generator "
        "(fast path by default; --exact for the reference algorithm).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--format", choices=("png", "coco"), default="png", help="mask output format")
    p.add_argument("--exact", action="store_true", help="use the exact (reference) path")
    p.add_argument("--overwrite", action="store_true", help="redo images already done")
    group = p.add_argument_group("generator options (segment-anything's names)")
    for name, kind, default in option_fields():
        shown = f"{default:.4g}" if isinstance(default, float) else default
        group.add_argument(
            "--" + name.replace("_", "-"), type=kind, default=default, help=f"default {shown}"
        )
    pipe = p.add_argument_group("pipeline (reading and writing beside the segmenting)")
    pipe.add_argument(
        "--sequential", action="store_true", help="read, segment and write one image at a time"
    )
    for f in dataclasses.fields(PipelineOptions):
        pipe.add_argument(
            "--" + f.name.replace("_", "-"),
            type=int,
            default=f.default,
            help=f"default {f.default}",
        )
    pipe.add_argument(
        "--encode-ahead",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="encode the next image in the reader thread (non-torch encoder backends)",
    )
    add_model_args(p)
    add_backend_args(p)
    return p


def shard(items: list[Any], env: dict[str, str] | None = None) -> tuple[list[Any], int, int]:
    """This process's share of ``items`` under torchrun (RANK, WORLD_SIZE): every
    WORLD_SIZE-th item from RANK. Without those variables, everything."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad RANK={rank} / WORLD_SIZE={world}")
    return items[rank::world], rank, world


def output_names(paths: list[Path]) -> list[str]:
    """A distinct folder name per input: its stem, or parent__stem when stems collide."""
    stems = [p.stem for p in paths]
    names = []
    seen: dict[str, int] = {}
    for p, stem in zip(paths, stems):
        name = stem if stems.count(stem) == 1 else f"{p.parent.name}__{stem}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        names.append(name)
    return names


def _write_result(folder: Path, image: Any, anns: list[dict], fmt: str, source: Path) -> None:
    """One image's masks (PNGs + metadata.csv, or COCO annotations.json) and overlay."""
    from ..io import save_png
    from ..visualize import overlay_masks

    order = sorted(range(len(anns)), key=lambda i: -anns[i]["area"])
    if fmt == "png":
        masks = [anns[i]["segmentation"] for i in order]
        with open(folder / "metadata.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                ["id", "area", "bbox_x0", "bbox_y0", "bbox_w", "bbox_h", "predicted_iou",
                 "stability_score", "point_x", "point_y"]
            )  # fmt: skip
            for k, i in enumerate(order):
                a = anns[i]
                save_png(folder / f"mask_{k:04d}.png", a["segmentation"].astype(bool))
                px, py = a["point_coords"][0]
                w.writerow([k, a["area"], *a["bbox"], f"{a['predicted_iou']:.6f}",
                            f"{a['stability_score']:.6f}", f"{px:.2f}", f"{py:.2f}"])  # fmt: skip
    else:
        from pycocotools import mask as mask_utils

        masks = []
        records = []
        for k, i in enumerate(order):
            a = dict(anns[i])
            rle = dict(a["segmentation"])
            masks.append(mask_utils.decode({**rle, "counts": rle["counts"].encode()}).astype(bool))
            a["id"] = k
            records.append(a)
        doc = {
            "image": {"file_name": str(source), "height": image.shape[0], "width": image.shape[1]},
            "annotations": records,
        }
        (folder / "annotations.json").write_text(json.dumps(doc))
    overlay = overlay_masks(image, masks) if masks else image
    save_png(folder / "overlay.png", overlay)


def _pipeline_options(args: argparse.Namespace) -> PipelineOptions:
    if args.sequential:
        return PipelineOptions(prefetch=0, write_queue=0, readers=1)
    return PipelineOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(PipelineOptions)}
    )


def run(args: argparse.Namespace) -> int:
    from ..inference.amg import SamAutomaticMaskGenerator
    from ..inference.everything_pipeline import (
        AheadEncoder,
        pending_jobs,
        progress_bar,
        run_folder,
    )
    from ..io import list_images
    from ..loading import ModelLoadError

    paths = list_images(args.inputs)
    if not paths:
        return fail("no images found in the inputs")
    try:
        options = _pipeline_options(args)
        mine, rank, world = shard([FolderJob(p, n) for p, n in zip(paths, output_names(paths))])
    except ValueError as e:
        return fail(str(e))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    todo = pending_jobs(mine, out, args.overwrite)
    segment = prepare = None
    if todo:
        if args.device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per torchrun process
            args.device = f"cuda:{os.environ['LOCAL_RANK']}"
        if args.exact:  # the reference algorithm encodes with the exact torch path too
            args.backend = "torch-exact"
        try:
            predictor = load_predictor(args)
            model = predictor.model_loader()
        except ModelLoadError as e:
            return fail(f"cannot load the model: {e}")
        # The generator decodes with torch (exact or fast path); a non-torch backend
        # chosen for this machine runs its image encoder.
        encoder = None if predictor.backend.startswith("torch") else predictor.encoder
        if encoder is not None and args.encode_ahead and not args.sequential:
            encoder = AheadEncoder(encoder, keep=options.prefetch + 2)
        amg = AmgOptions(**{name: getattr(args, name) for name, _, _ in option_fields()})
        try:
            gen = SamAutomaticMaskGenerator(
                model,
                output_mode="binary_mask" if args.format == "png" else "coco_rle",
                fast=not args.exact,
                encoder=encoder,
                **amg.kwargs(),
            )
        except ValueError as e:
            return fail(str(e))
        segment = gen.generate
        if isinstance(encoder, AheadEncoder):
            prepare = encoder.prefetcher(gen.predictor)

    bar = progress_bar(
        len(todo), f"rank {rank}/{world}" if world > 1 else "images", rank if world > 1 else 0
    )

    def skipped(message: str) -> None:
        bar.write(f"skipped: {message}", file=sys.stderr)

    with bar:
        report = run_folder(
            todo,
            out,
            segment or (lambda image: []),
            lambda tmp, job, image, anns: _write_result(tmp, image, anns, args.format, job.path),
            prepare=prepare,
            overwrite=args.overwrite,
            options=options,
            progress=bar.update,
            on_skip=skipped,
        )
    rate = (
        f"; {report.images_per_second:.3g} images/s, {report.images_per_hour:.0f} images/hour "
        f"({report.seconds:.1f} s)"
        if report.segmented
        else ""
    )
    masks = f"; {report.masks} mask(s)" if report.segmented else ""
    if report.segmented and not report.masks:
        masks += " (none passed the filters: lower --pred-iou-thresh / --stability-score-thresh)"
    print(
        f"{len(report.segmented)} image(s) segmented, {len(mine) - len(todo)} already done, "
        f"{len(report.skipped)} skipped"
        + (f" (rank {rank} of {world})" if world > 1 else "")
        + f"{masks}{rate}; results in {out}",
        file=sys.stderr,
    )
    return 1 if report.skipped else 0
