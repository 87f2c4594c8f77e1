"""The ``report`` stage of ``scripts/shapes_world.py``: evaluate, measure, draw, write.

Everything reported comes from the run folder: trained models, their logs and the
held-out scenes. ``make_report`` writes ``<work>/results.json`` and figures; with
``--docs`` it renders ``docs/results.md``; with ``--ship`` it writes the float16 teacher
and decoupled student plus ``shapes_models.json`` into ``src/mobilesam/assets``.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path

MODELS = {
    "teacher": "teacher",
    "decoupled": "decoupled student (distilled, teacher's decoder)",
    "coupled_a": "coupled student (a): decoder trained jointly from scratch",
    "coupled_b": "coupled student (b): teacher's decoder frozen",
    "finetune": "decoupled student, then its decoder fine-tuned",
}


def _load(path: Path):
    from mobilesam.loading import load_model

    return load_model(None, path)  # float32 even from the float16 shipped files


def latency(models: dict, reps: int = 20) -> dict[str, dict[str, float]]:
    """Median CPU milliseconds per model: image encoder (1x3xSxS) and decoder (one point).

    Models are timed in turns (rep 1 of every model, then rep 2, ...), so load from other
    processes hits them alike and the ratios stay meaningful on a busy machine.
    """
    import numpy as np
    import torch

    times: dict[str, dict[str, list[float]]] = {k: {"enc": [], "dec": []} for k in models}
    with torch.inference_mode():
        inputs = {}
        for k, m in models.items():
            s = m.image_size
            x = torch.randn(1, 3, s, s)
            pts = (torch.tensor([[[s / 2, s / 2]]]), torch.ones(1, 1))
            inputs[k] = (x, pts, m.image_encoder(x))
        for _ in range(reps):
            for k, m in models.items():
                x, pts, _ = inputs[k]
                t = time.perf_counter()
                emb = m.image_encoder(x)
                times[k]["enc"].append(time.perf_counter() - t)
                t = time.perf_counter()
                m.decode(emb, points=pts)
                times[k]["dec"].append(time.perf_counter() - t)
    return {
        k: {
            "encoder_ms": 1000 * float(np.median(v["enc"])),
            "decoder_ms": 1000 * float(np.median(v["dec"])),
        }
        for k, v in times.items()
    }


def evaluate(models: dict, work: Path, heldout: int) -> dict:
    from mobilesam.evaluation.alignment import (
        EvalConfig,
        evaluate_alignment,
        iter_image_folder,
        load_items,
    )

    folder = work / "scenes" / "heldout"
    items = iter_image_folder(folder, folder / "gt", heldout)
    cfg = EvalConfig()
    out = {}
    for key, model in models.items():
        ref = None if key == "teacher" else models["teacher"]
        out[key] = evaluate_alignment(model, load_items(items, True), ref, cfg, total=len(items))
    return out


def example_figure(models: dict, work: Path, out: Path, n: int = 4) -> Path:
    """Held-out scenes: GT object and each model's mask for the same centre point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mobilesam.data import SPLITS, render_scene
    from mobilesam.evaluation.alignment import MaskPredictor, _Prompt
    from mobilesam.evaluation.prompts import center_point

    cols = ["image + point", "ground truth", *models]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.2 * len(cols), 2.3 * n))
    preds = {k: MaskPredictor(m) for k, m in models.items()}
    for r in range(n):
        scene = render_scene(SPLITS["heldout"][0] + 7 * r + 3)
        areas = scene.masks.reshape(len(scene), -1).sum(1)
        gt = scene.masks[int(np.argsort(areas)[len(areas) // 2])]
        pt = center_point(gt)
        prompt = _Prompt("point", pt[None], np.array([1]))
        panels = [scene.image, gt]
        for p in preds.values():
            p.set_image(scene.image)
            panels.append(p.predict(prompt)[0])
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            if panel.ndim == 3:
                ax.imshow(panel)
            else:
                over = scene.image.astype(float) * 0.35
                over[panel] = over[panel] * 0.3 + np.array([255, 40, 40]) * 0.7
                ax.imshow(over.astype(np.uint8))
                if c > 1:
                    inter = (panel & gt).sum() / max((panel | gt).sum(), 1)
                    ax.set_xlabel(f"IoU vs GT {inter:.2f}", fontsize=8)
            ax.plot([pt[0]], [pt[1]], "*", color="yellow", markersize=10, markeredgecolor="k")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
    fig.suptitle("held-out scenes, one point at the GT mask centre (best of 3 by predicted IoU)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def student_curves(work: Path, out: Path) -> Path:
    from mobilesam.distill.report import read_metrics
    from mobilesam.training.report import plot_comparison

    runs = []
    for key, path in (
        ("decoupled (distilled)", work / "decoupled" / "miou.jsonl"),
        ("coupled (a) decoder from scratch", work / "coupled_a" / "metrics.jsonl"),
        ("coupled (b) teacher decoder frozen", work / "coupled_b" / "metrics.jsonl"),
    ):
        if path.is_file():
            recs = [r for r in read_metrics(path) if "miou_point_gt" in r]
            runs.append((key, [(r["step"], r["miou_point_gt"]) for r in recs]))
    return plot_comparison(
        runs, out, "student optimizer step (batch 8)", "held-out 1-point mIoU vs GT",
        "students at equal steps",
    )  # fmt: skip


def make_report(args, work: Path, repo: Path) -> dict:
    import torch

    from mobilesam.build import parameter_table

    paths = {
        "teacher": work / "teacher" / "model.safetensors",
        "decoupled": work / "decoupled" / "model.safetensors",
        "coupled_a": work / "coupled_a" / "model.safetensors",
        "coupled_b": work / "coupled_b" / "model.safetensors",
        "finetune": work / "finetune" / "model.safetensors",
    }
    models = {k: _load(p) for k, p in paths.items() if p.is_file()}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results: dict = {"models": {}, "settings": settings}
    results["settings"]["torch_threads"] = torch.get_num_threads()
    results["settings"]["machine"] = f"{platform.processor() or platform.machine()}"
    evals = evaluate(models, work, args.heldout)
    lat = latency(models)
    for key, model in models.items():
        run = work / ("decoupled" if key == "decoupled" else key)
        done = json.loads((run / "done.json").read_text()) if (run / "done.json").is_file() else {}
        results["models"][key] = {
            "label": MODELS[key],
            "params": parameter_table(model),
            "latency": lat[key],
            "train_seconds": done.get("train_seconds", done.get("seconds")),
            "cache_seconds": done.get("cache_seconds"),
            "cpu_seconds": done.get("cpu_seconds"),
            "cache_cpu_seconds": done.get("cache_cpu_seconds"),
            "steps": done.get("steps"),
            "eval": evals[key],
        }
    stages_file = work / "stage_seconds.json"
    stages = json.loads(stages_file.read_text()) if stages_file.is_file() else {}
    for stage in ("teacher", "coupled_a", "coupled_b"):  # runs started outside this script
        done_file = work / stage / "done.json"
        if stage not in stages and done_file.is_file():
            stages[stage] = json.loads(done_file.read_text())["seconds"]
    results["stage_seconds"] = stages
    for key in ("note", "discussion"):  # optional free text about this run, kept in the doc
        if (work / f"{key}.md").is_file():
            results[key] = (work / f"{key}.md").read_text().strip()
    (work / "results.json").write_text(json.dumps(results, indent=1))
    figs = work / "figures"
    example_figure(models, work, figs / "shapes_examples.png")
    student_curves(work, figs / "shapes_student_curves.png")
    if (work / "teacher" / "curves.png").is_file():  # not with --teacher-from
        shutil.copy(work / "teacher" / "curves.png", figs / "shapes_teacher_curves.png")
    if (work / "decoupled" / "embedding_curves.png").is_file():
        shutil.copy(work / "decoupled" / "embedding_curves.png", figs / "shapes_distill_curves.png")
    if args.docs:
        from shapes_world_docs import write_results_md

        dest = repo / "docs" / "figures"
        dest.mkdir(parents=True, exist_ok=True)
        for f in figs.glob("*.png"):
            shutil.copy(f, dest / f.name)
        write_results_md(results, repo / "docs" / "results.md")
    if args.ship:
        ship(models, results, repo)
    return results


def ship(
    models: dict,
    results: dict,
    repo: Path,
    command: str | None = None,
    student: str = "decoupled",
) -> None:
    """Write the float16 teacher and a student (``student``: its key in ``models``) and their
    recipe (``command``: what made them; default the shapes_world.py command of ``results``'
    settings)."""
    from mobilesam.training.assets import RECIPE_FILE, save_fp16

    assets = repo / "src" / "mobilesam" / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    save_fp16(models["teacher"], assets / "shapes_teacher.safetensors")
    save_fp16(models[student], assets / "shapes_student.safetensors")
    recipe = {
        "command": command
        or (
            "scripts/shapes_world.py --threads {threads} --teacher-steps {teacher_steps} "
            "--student-steps {student_steps} --student-scenes {student_scenes} "
            "--heldout {heldout} --docs --ship"
        ).format(**results["settings"]),
        "recipe": "docs/results.md",
        "settings": results["settings"],
        "documented": {
            k: {
                "heldout_scenes": results["settings"]["heldout"],
                "point_miou_vs_gt": results["models"][m]["eval"]["protocols"]["point"]["a_vs_gt"],
                "box_miou_vs_gt": results["models"][m]["eval"]["protocols"]["box"]["a_vs_gt"],
            }
            for k, m in (("shapes_teacher", "teacher"), ("shapes_student", student))
        },
        "params": {k: results["models"][k]["params"]["total"] for k in ("teacher", student)},
        "student": results["models"][student]["label"],
        "storage": "float16 safetensors; load_shipped() returns float32 models",
    }
    (assets / RECIPE_FILE).write_text(json.dumps(recipe, indent=1))
