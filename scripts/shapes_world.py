#!/usr/bin/env python
"""Shapes world: train a small SAM from scratch, distill it, compare with coupled training.

One command regenerates every number of ``docs/results.md`` on a CPU::

    .venv/bin/python scripts/shapes_world.py --out runs/shapes_world --threads 2

Stages (each skipped when its output already exists, so an interrupted run continues;
``--stages`` runs a subset, e.g. two coupled baselines in two processes):

1. ``scenes``    training scenes for the students and held-out scenes with ground truth
2. ``teacher``   a small ViT SAM trained from scratch with SAM's recipe (mask losses)
3. ``decoupled`` teacher-embedding cache + student encoder trained on embedding MSE with
                 :mod:`mobilesam.distill`, assembled with the teacher's prompt encoder and
                 mask decoder
4. ``coupled_a`` the same student trained end to end on the mask losses, decoder from scratch
5. ``coupled_b`` the same, under the teacher's frozen prompt encoder and mask decoder
6. ``finetune``  the decoupled student's mask decoder fine-tuned on the mask losses for
                 ``--finetune-steps`` (the paper's optional last step; encoders frozen)
7. ``report``    evaluation on held-out scenes, parameters, CPU latency, figures,
                 ``results.json``; with ``--docs`` also ``docs/results.md`` and its figures;
                 with ``--ship`` the float16 teacher and student in ``src/mobilesam/assets``

Students get equal budgets: the same steps, batch size, learning rate schedule, initial
encoder weights and training scenes (``--student-scenes`` training seeds). Scenes are always
256 px; a teacher with a larger input (``--teacher-from`` a model trained with
``train_teacher.py --image-size 512``) sees them upscaled, and so do its students, which are
built at the teacher's input size to produce its token grid. Each stage records
its training CPU seconds (this process, all threads, monitor evaluations excluded) beside its
monitor curve, for comparisons at equal compute (``scripts/shapes_seeds.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("scenes", "teacher", "decoupled", "coupled_a", "coupled_b", "finetune", "report")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/shapes_world", help="work folder (git-ignored runs/)")
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--teacher-steps", type=int, default=1200)
    p.add_argument(
        "--teacher-from",
        type=Path,
        default=None,
        help="use this trained teacher (model.safetensors, e.g. from scripts/train_teacher.py) "
        "instead of training one in the teacher stage",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="students' seed (initial weights, data order)"
    )
    p.add_argument("--student-steps", type=int, default=400)
    p.add_argument("--student-scenes", type=int, default=1000, help="training scenes of students")
    p.add_argument("--student-lr", type=float, default=1e-3)
    p.add_argument("--finetune-steps", type=int, default=100, help="decoder fine-tuning steps")
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--heldout", type=int, default=100, help="held-out scenes for the report")
    p.add_argument("--monitor-every", type=int, default=50, help="student mIoU curve interval")
    p.add_argument("--monitor-scenes", type=int, default=32, help="held-out scenes of that curve")
    p.add_argument("--docs", action="store_true", help="write docs/results.md and its figures")
    p.add_argument("--ship", action="store_true", help="write the float16 models to assets/")
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test, minutes)")
    args = p.parse_args(argv)
    if args.quick:
        args.teacher_steps, args.student_steps, args.finetune_steps = 20, 10, 4
        args.student_scenes, args.heldout, args.monitor_every = 40, 6, 5
        args.monitor_scenes = 4
    return args


# ----------------------------------------------------------------------------- recipes


def teacher_recipe(args, out: Path):
    from mobilesam.training import SamTrainConfig

    return SamTrainConfig(
        out=str(out), steps=args.teacher_steps, batch_size=8, prompts_per_image=2,
        correction_rounds=1, lr=8e-4, warmup=100, eval_every=100, eval_scenes=32,
        log_every=10, threads=args.threads,
    )  # fmt: skip


def coupled_recipe(args, out: Path, trainable: str):
    from mobilesam.training import SamTrainConfig

    return SamTrainConfig(
        out=str(out), steps=args.student_steps, batch_size=8, prompts_per_image=2,
        correction_rounds=1, lr=args.student_lr, warmup=40, trainable=trainable,
        train_scenes=args.student_scenes, eval_every=args.monitor_every,
        eval_scenes=args.monitor_scenes, log_every=10, threads=args.threads, seed=args.seed,
    )  # fmt: skip


def finetune_recipe(args, out: Path):
    from mobilesam.training import SamTrainConfig

    return SamTrainConfig(
        out=str(out), steps=args.finetune_steps, batch_size=8, prompts_per_image=2,
        correction_rounds=1, lr=args.finetune_lr, warmup=max(1, args.finetune_steps // 10),
        trainable="mask_decoder", train_scenes=args.student_scenes,
        eval_every=args.monitor_every, eval_scenes=args.monitor_scenes, log_every=10,
        threads=args.threads, seed=args.seed,
    )  # fmt: skip


def distill_recipe(args, out: Path, cache: Path):
    from mobilesam.distill import DistillConfig

    return DistillConfig(
        out=str(out), cache=str(cache), steps=args.student_steps, batch_size=8,
        lr=args.student_lr, min_lr=1e-5, warmup=40, holdout=min(32, args.student_scenes // 5),
        eval_every=0,
        log_every=10, checkpoint_every=args.monitor_every, num_workers=0, device="cpu",
        resume=True, seed=args.seed,
    )  # fmt: skip


def scene_config():
    """The scenes every stage renders: 256 px, whatever the models' input size."""
    from mobilesam.data import ShapesConfig

    return ShapesConfig(size=256)


def teacher_input_size(work: Path) -> int:
    """The teacher's input side, which every student of the run takes too.

    A teacher trained at a larger input than the 256-px scenes (``train_teacher.py
    --image-size``) sees them upscaled; its students must produce its token grid, so they
    are built at its size and see the scenes upscaled the same way.
    """
    from mobilesam.checkpoint import read_config

    path = work / "teacher" / "model.safetensors"
    config = read_config(path)
    if config is None:
        raise SystemExit(f"{path}: no model config recorded (save it with mobilesam)")
    return config.image_size


def fresh_student(teacher_ckpt: Path | None = None, seed: int = 0, image_size: int = 256):
    """The student every run of a seed starts from, optionally with the teacher's decoder."""
    import torch

    from mobilesam.build import build_sam
    from mobilesam.checkpoint import load_state_dict_strict, read_state_dict
    from mobilesam.training.models import SHAPES_STUDENT

    torch.manual_seed(seed)
    model = build_sam(SHAPES_STUDENT.replace(image_size=image_size))
    if teacher_ckpt is not None:
        sd = read_state_dict(teacher_ckpt)
        for part in ("prompt_encoder", "mask_decoder"):
            sub = {k[len(part) + 1 :]: v for k, v in sd.items() if k.startswith(part + ".")}
            load_state_dict_strict(getattr(model, part), sub)
    return model


# ----------------------------------------------------------------------------- stages


def stage_scenes(args, work: Path) -> None:
    from mobilesam.data import write_scenes

    cfg = scene_config()
    for split, n in (("train", args.student_scenes), ("heldout", args.heldout)):
        folder = work / "scenes" / split
        if len(list(folder.glob("*.png"))) == n:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        write_scenes(folder, split, n, cfg)


def stage_teacher(args, work: Path) -> None:
    from mobilesam.build import build_model
    from mobilesam.training import train_sam
    from mobilesam.training.models import SHAPES_TEACHER

    out = work / "teacher"
    if (out / "done.json").is_file():
        return
    if args.teacher_from is not None:  # a teacher trained elsewhere (in sittings)
        if not args.teacher_from.is_file():
            raise SystemExit(f"--teacher-from: no such file {args.teacher_from}")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.teacher_from, out / "model.safetensors")
        (out / "done.json").write_text(json.dumps({"copied_from": str(args.teacher_from)}))
        return
    import torch

    torch.manual_seed(0)
    train_sam(build_model(SHAPES_TEACHER), teacher_recipe(args, out))


def stage_decoupled(args, work: Path) -> None:
    """Cache the teacher's embeddings, distill with mobilesam.distill, assemble."""
    import torch

    from mobilesam.distill import Distiller, build_cache, load_teacher, plot_curves

    # the function from its module: once that module is imported (the CLI does), the
    # package attribute of the same name is the module, not the function
    from mobilesam.distill.assemble import assemble
    from mobilesam.distill.report import MetricsLog
    from mobilesam.distill.sources import folder_source
    from mobilesam.training.trainer import MONITOR_OFFSET, point_miou

    out = work / "decoupled"
    teacher_ckpt = work / "teacher" / "model.safetensors"
    if (out / "done.json").is_file():
        return
    cache = work / "cache"
    t0, c0 = time.perf_counter(), time.process_time()
    teacher = load_teacher(None, teacher_ckpt)
    report = build_cache(cache, folder_source(work / "scenes" / "train"), teacher, batch_size=8)
    cache_seconds, cache_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(report.summary())
    size = teacher.image_size
    student = fresh_student(seed=args.seed, image_size=size)
    distiller = Distiller(distill_recipe(args, out / "run", cache), student=student, progress=True)
    # The assembled model (student encoder + teacher decoder) is scored along the way on the
    # same held-out monitor scenes as the coupled runs, so the curves compare directly.
    from mobilesam.data import SPLITS, render_scene
    from mobilesam.training.trainer import upscale_scene

    first = SPLITS["heldout"][0] + MONITOR_OFFSET
    scenes = [render_scene(first + i, scene_config()) for i in range(args.monitor_scenes)]
    monitor = [upscale_scene(scene, size) for scene in scenes]
    probe = fresh_student(teacher_ckpt, args.seed, size)
    out.mkdir(parents=True, exist_ok=True)
    curve = MetricsLog(out / "miou.jsonl")
    (out / "miou.jsonl").unlink(missing_ok=True)
    train_seconds, train_cpu = 0.0, 0.0
    step = 0
    while True:
        probe.image_encoder.load_state_dict(distiller.encoder.state_dict())
        miou = point_miou(probe, monitor)
        curve.write({"kind": "eval", "step": step, "miou_point_gt": miou, "cpu_seconds": train_cpu})
        if step >= distiller.total_steps:
            break
        t, c = time.perf_counter(), time.process_time()
        result = distiller.train(stop_after=args.monitor_every)
        train_seconds += time.perf_counter() - t
        train_cpu += time.process_time() - c
        step = result.step
    plot_curves(out / "run", out / "embedding_curves.png")
    with torch.no_grad():
        assemble(out / "run", teacher_ckpt, out / "model.safetensors")
    done = {
        "steps": step, "train_seconds": train_seconds, "cache_seconds": cache_seconds,
        "cpu_seconds": train_cpu, "cache_cpu_seconds": cache_cpu,
    }  # fmt: skip
    (out / "done.json").write_text(json.dumps(done))


def stage_coupled(args, work: Path, variant: str) -> None:
    from mobilesam.training import train_sam

    out = work / f"coupled_{variant}"
    if (out / "done.json").is_file():
        return
    teacher_ckpt = work / "teacher" / "model.safetensors"
    size = teacher_input_size(work)
    if variant == "a":
        model, trainable = fresh_student(seed=args.seed, image_size=size), "all"
    else:
        model, trainable = fresh_student(teacher_ckpt, args.seed, size), "image_encoder"
    # the 256-px scenes, upscaled to the student's input as the teacher saw them
    train_sam(model, coupled_recipe(args, out, trainable), scene_config=scene_config())


def stage_finetune(args, work: Path) -> None:
    """Fine-tune the decoupled student's mask decoder (prompt encoder and encoder frozen)."""
    from mobilesam.training import train_sam

    out = work / "finetune"
    if (out / "done.json").is_file():
        return
    student = work / "decoupled" / "model.safetensors"
    if not student.is_file():
        raise SystemExit(f"finetune needs the decoupled student first: no {student}")
    from mobilesam.loading import load_model

    train_sam(load_model(None, student), finetune_recipe(args, out), scene_config=scene_config())


def record_stage_time(work: Path, stage: str, seconds: float) -> None:
    """Keep the longest wall-clock seen per stage (a re-run that skips finished work is short)."""
    path = work / "stage_seconds.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    times[stage] = max(seconds, times.get(stage, 0.0))
    path.write_text(json.dumps(times, indent=1))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for stage in args.stages:
        print(f"== {stage}", flush=True)
        s0 = time.perf_counter()
        if stage == "scenes":
            stage_scenes(args, work)
        elif stage == "teacher":
            stage_teacher(args, work)
        elif stage == "decoupled":
            stage_decoupled(args, work)
        elif stage in ("coupled_a", "coupled_b"):
            stage_coupled(args, work, stage[-1])
        elif stage == "finetune":
            stage_finetune(args, work)
        elif stage == "report":
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from shapes_world_report import make_report

            make_report(args, work, REPO)
        seconds = time.perf_counter() - s0
        print(f"== {stage} done in {seconds:.0f} s", flush=True)
        record_stage_time(work, stage, seconds)
    print(f"all stages done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
