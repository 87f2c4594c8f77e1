"""``mobilesam distill``: teacher-embedding cache, student training, assembly, report.

    mobilesam distill cache --teacher vit_h --teacher-checkpoint sam_vit_h_4b8939.pth \\
        --images sa1b/ --out cache/
    mobilesam distill train --cache cache/ --student vit_t --out runs/vit_t
    mobilesam distill assemble --student runs/vit_t --teacher-checkpoint sam_vit_h_4b8939.pth \\
        --out mobile_sam_distilled.safetensors
    mobilesam distill report runs/vit_t

``cache`` and ``train`` run under ``torchrun`` as they are (each rank takes its share).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..distill.config import CacheConfig, DistillConfig, add_config_arguments

    p = subparsers.add_parser(
        "distill",
        help="train a light image encoder from a SAM teacher's embeddings",
        description="Decoupled distillation (MobileSAM): cache teacher embeddings, train a "
        "student encoder with an MSE loss, assemble it with the teacher's prompt encoder and "
        "mask decoder, and report the training curves.",
    )
    sub = p.add_subparsers(dest="distill_command", metavar="STEP", required=True)

    c = sub.add_parser("cache", help="compute and store teacher embeddings (resumable)")
    add_config_arguments(c, CacheConfig)
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    t = sub.add_parser("train", help="train a student encoder on cached (or online) embeddings")
    add_config_arguments(t, DistillConfig)
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    a = sub.add_parser("assemble", help="student encoder + teacher decoder -> one .safetensors")
    a.add_argument("--student", required=True, help="run folder (or student encoder file)")
    a.add_argument("--teacher-checkpoint", required=True, help="teacher weights file")
    a.add_argument("--out", required=True, help="output .safetensors")

    r = sub.add_parser("report", help="print a run's summary and draw its curves (PNG)")
    r.add_argument("run", help="run folder")
    r.add_argument("--png", default=None, help="curves image (default RUN/curves.png)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")

    sub.add_parser("students", help="list the registered student encoders")
    return p


def _cache(args: argparse.Namespace) -> int:
    from ..distill.cache import CacheError, build_cache
    from ..distill.config import CacheConfig, config_from_args
    from ..distill.dist import setup, teardown
    from ..distill.sources import describe, open_source
    from ..distill.teacher import load_teacher
    from ._common import fail

    cfg = config_from_args(CacheConfig, args)
    if not cfg.teacher_checkpoint:
        return fail("--teacher-checkpoint is required (a random teacher teaches nothing)")
    from datetime import timedelta

    # gloo with a long timeout: ranks only wait for each other once, at the very end
    env = setup(cfg.device, backend="gloo", timeout=timedelta(days=2))
    try:
        source = open_source(cfg.images, cfg.source_kind)
        if env.is_main:
            print(describe(source))
            for note in source.notes[:20]:
                print(f"  note: {note}")
        teacher = load_teacher(cfg.teacher, cfg.teacher_checkpoint, cfg.image_size, env.device)
        report = build_cache(
            cfg.out, source, teacher, shard_size=cfg.shard_size, batch_size=cfg.batch_size,
            precision=cfg.precision, num_workers=cfg.num_workers, verify=cfg.verify, env=env,
            checkpoint_name=cfg.teacher_checkpoint, progress=not args.quiet,
        )  # fmt: skip
    except (CacheError, FileNotFoundError, ValueError) as e:
        teardown(env)
        return fail(str(e))
    teardown(env)
    if env.is_main:
        print(report.summary())
        for msg in report.failed[:50]:
            print(f"  unreadable: {msg}")
        if len(report.failed) > 50:
            print(f"  ... and {len(report.failed) - 50} more (see {cfg.out}/failed.jsonl)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ..distill.cache import CacheError
    from ..distill.config import DistillConfig, config_from_args
    from ..distill.report import format_summary, plot_curves, summarize
    from ..distill.train import Distiller
    from ._common import fail

    cfg = config_from_args(DistillConfig, args)
    try:
        distiller = Distiller(cfg, progress=not args.quiet)
        rank = distiller.env.rank
        result = distiller.train()
    except (CacheError, FileExistsError, FileNotFoundError, ValueError, KeyError) as e:
        return fail(str(e).strip("'\""))
    if rank == 0 and result.finished:
        print(format_summary(summarize(cfg.out)))
        print(f"curves: {plot_curves(cfg.out)}")
        print(f"student encoder: {result.run_dir / 'student_encoder.safetensors'}")
    return 0


def _assemble(args: argparse.Namespace) -> int:
    from ..build import parameter_table
    from ..checkpoint import CheckpointError
    from ..distill.assemble import assemble
    from ._common import fail

    try:
        model = assemble(args.student, args.teacher_checkpoint, args.out)
    except (CheckpointError, FileNotFoundError) as e:
        return fail(str(e))
    table = parameter_table(model)
    print(
        f"wrote {args.out}: {model.config.name} at {model.image_size} px, "  # type: ignore[union-attr]
        f"{table['total_forward'] / 1e6:.2f}M parameters "
        f"(encoder {table['image_encoder_forward'] / 1e6:.2f}M)"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    import json

    from ..distill.report import format_summary, plot_curves, summarize
    from ._common import fail

    try:
        summary = summarize(args.run)
    except FileNotFoundError as e:
        return fail(str(e))
    png = plot_curves(args.run, args.png)
    if args.json:
        print(json.dumps({**summary, "curves": str(png)}, indent=1))
    else:
        print(format_summary(summary))
        print(f"  curves: {png}")
    return 0


def _students(args: argparse.Namespace) -> int:
    from ..build import build_image_encoder, get_config
    from ..distill.students import get_student, list_students, student_model_config

    teacher = get_config("vit_h")
    print(f"{'name':<14}{'encoder params':>16}  description")
    for name in list_students():
        enc = build_image_encoder(student_model_config(name, teacher))
        n = sum(
            p.numel() for k, p in enc.named_parameters() if not k.startswith(("head", "norm_head"))
        )
        print(f"{name:<14}{n / 1e6:>15.2f}M  {get_student(name).description}")
    return 0


def run(args: argparse.Namespace) -> int:
    handlers = {
        "cache": _cache,
        "train": _train,
        "assemble": _assemble,
        "report": _report,
        "students": _students,
    }
    return handlers[args.distill_command](args)


if __name__ == "__main__":  # pragma: no cover
    from . import main

    sys.exit(main(["distill", *sys.argv[1:]]))
