#!/usr/bin/env python
"""The distillation claim on shapes world, over seeds, at equal steps and at equal compute.

    .venv/bin/python scripts/shapes_seeds.py --teacher runs/teacher_v2/model.safetensors \\
        --out runs/claim --seeds 0 1 2 --parallel 2 --docs

Runs ``scripts/shapes_world.py`` once per seed (students' initial weights and data order;
the teacher, training scenes and held-out scenes are the same for every seed), each in its
own process with one torch thread, ``--parallel`` seeds at a time, then compares the
students over seeds (mean +/- sample std):

* **equal steps**: every student the same optimizer steps; held-out mIoU (one point, box)
  against ground truth and against the teacher;
* **equal compute**: training CPU seconds (process time of the training alone, so a
  machine running two seeds at once does not bias it), read from each student's monitor
  curve (one point vs ground truth on 32 held-out monitor scenes, scored every
  ``--monitor-every`` steps): each student's monitor mIoU at the last point within the
  decoupled student's whole cost, its embedding cache included.

An interrupted run continues (finished stages are skipped). ``--docs`` writes
``docs/results.md`` and its figures; ``--ship`` writes the float16 teacher and seed 0's
student (``--ship-student``, default the fine-tuned one: the paper's full recipe) into the
package.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
STUDENTS = ("decoupled", "finetune", "coupled_a", "coupled_b")
LABELS = {
    "teacher": "teacher",
    "decoupled": "decoupled (distilled, teacher's decoder)",
    "finetune": "decoupled + decoder fine-tuned",
    "coupled_a": "coupled (a): decoder from scratch",
    "coupled_b": "coupled (b): teacher's decoder frozen",
}


CURVES = {  # model -> its monitor curve, relative to a seed's folder
    "decoupled": "decoupled/miou.jsonl",
    "finetune": "finetune/metrics.jsonl",
    "coupled_a": "coupled_a/metrics.jsonl",
    "coupled_b": "coupled_b/metrics.jsonl",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", type=Path, required=True, help="trained teacher safetensors")
    p.add_argument("--out", type=Path, default=Path("runs/claim"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--parallel", type=int, default=1, help="seeds run at once (one thread each)")
    p.add_argument("--student-steps", type=int, default=500)
    p.add_argument("--finetune-steps", type=int, default=100)
    p.add_argument("--monitor-every", type=int, default=50)
    p.add_argument("--heldout", type=int, default=100)
    p.add_argument("--teacher-note", default="", help="where the teacher comes from (for the doc)")
    p.add_argument(
        "--discussion", type=Path, default=None, help="a markdown file read into the answer"
    )
    p.add_argument("--aggregate-only", action="store_true", help="no training, just the tables")
    p.add_argument("--docs", action="store_true", help="write docs/results.md and figures")
    p.add_argument("--ship", action="store_true", help="ship the teacher and seed 0's student")
    p.add_argument(
        "--ship-student", default="finetune", choices=STUDENTS, help="which student --ship writes"
    )
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test)")
    return p.parse_args(argv)


def run_seed(args, seed: int) -> int:
    """One seed's stages in a child process; its output goes to ``<seed dir>/log.txt``."""
    work = args.out / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, str(REPO / "scripts" / "shapes_world.py"), "--out", str(work),
        "--seed", str(seed), "--threads", "1", "--teacher-from", str(args.teacher),
        "--student-steps", str(args.student_steps), "--finetune-steps", str(args.finetune_steps),
        "--monitor-every", str(args.monitor_every), "--heldout", str(args.heldout),
    ]  # fmt: skip
    if args.quick:
        cmd.append("--quick")
    print(f"seed {seed}: running (stages and progress in {work}/log.txt)", flush=True)
    with open(work / "log.txt", "a") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    print(f"seed {seed}: {'done' if code == 0 else f'failed ({code}), see {work}/log.txt'}")
    return code


# ----------------------------------------------------------------------------- reading


def curve(path: Path, offset_cpu: float = 0.0, offset_step: int = 0) -> list[tuple]:
    """(step, cpu_seconds, mIoU) of a monitor curve; the step-0 point has no CPU time yet."""
    from mobilesam.distill.report import read_metrics

    return [
        (r["step"] + offset_step, r.get("cpu_seconds", 0.0) + offset_cpu, r["miou_point_gt"])
        for r in read_metrics(path)
        if r.get("kind") == "eval" and "miou_point_gt" in r
    ]


def seed_record(work: Path) -> dict:
    """A finished seed's held-out results, costs and monitor curves."""
    if not (work / "results.json").is_file():
        raise SystemExit(f"{work}: no results.json (that seed has not finished; run without "
                         "--aggregate-only to finish it)")  # fmt: skip
    res = json.loads((work / "results.json").read_text())
    models = res["models"]
    dec = models["decoupled"]
    cache = dec.get("cache_cpu_seconds") or 0.0
    curves = {}
    for key, rel in CURVES.items():
        if not (work / rel).is_file():
            continue
        if key == "decoupled":
            curves[key] = curve(work / rel, cache)
        elif key == "finetune":  # continues from the decoupled student's end
            curves[key] = curve(work / rel, cache + dec["cpu_seconds"], dec["steps"])
        else:
            curves[key] = curve(work / rel)
    return {"results": res, "curves": curves}


def at_budget(points: list[tuple], budget: float) -> tuple[float, int] | None:
    """(mIoU, step) at the last monitor point whose CPU time is within ``budget``."""
    inside = [p for p in points if p[1] <= budget * 1.0001]
    return (inside[-1][2], inside[-1][0]) if inside else None


def _reached(points: list[tuple], budget: float) -> dict | None:
    hit = at_budget(points, budget)
    return None if hit is None else {"miou": hit[0], "step": hit[1]}


def summarise(records: dict[int, dict]) -> dict:
    """Per model: equal-steps held-out numbers and equal-compute monitor numbers, per seed."""
    out: dict = {"seeds": sorted(records), "equal_steps": {}, "equal_compute": {}, "cost": {}}
    for key in ("teacher", *STUDENTS):
        rows = {"point_gt": [], "box_gt": [], "point_teacher": [], "box_teacher": []}
        for rec in records.values():
            m = rec["results"]["models"].get(key)
            if m is None:
                continue
            p = m["eval"]["protocols"]
            rows["point_gt"].append(p["point"]["a_vs_gt"])
            rows["box_gt"].append(p["box"]["a_vs_gt"])
            if key != "teacher":
                rows["point_teacher"].append(p["point"]["a_vs_b"])
                rows["box_teacher"].append(p["box"]["a_vs_b"])
        out["equal_steps"][key] = rows
    for seed, rec in records.items():
        c = rec["curves"]
        budget = c["decoupled"][-1][1]  # the decoupled student's whole cost, cache included
        # ... and, as a second budget, the fine-tuned student's (the paper's full recipe)
        ft_budget = c["finetune"][-1][1] if "finetune" in c else None
        row: dict = {"budget_cpu_s": budget, "finetune_budget_cpu_s": ft_budget, "at_finetune": {}}
        for key, pts in c.items():
            row[key] = _reached(pts, budget)
            if ft_budget is not None:
                row["at_finetune"][key] = _reached(pts, ft_budget)
            out["cost"].setdefault(key, []).append(pts[-1][1])
        out["equal_compute"][seed] = row
    return out


# ----------------------------------------------------------------------------- drawing


def plot_curves(records: dict[int, dict], out: Path) -> Path:
    """Monitor mIoU against steps and against CPU minutes: mean over seeds, +/- std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for key in STUDENTS:
        runs = [r["curves"][key] for r in records.values() if key in r["curves"]]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        arr = np.array([r[:n] for r in runs])  # seeds x points x (step, cpu, miou)
        mu = arr[:, :, 2].mean(0)
        sd = arr[:, :, 2].std(0, ddof=1) if len(runs) > 1 else np.zeros_like(mu)
        for ax, x in ((axes[0], arr[0, :, 0]), (axes[1], arr[:, :, 1].mean(0) / 60)):
            (line,) = ax.plot(x, mu, "o-", markersize=3, label=LABELS[key])
            ax.fill_between(x, mu - sd, mu + sd, color=line.get_color(), alpha=0.2)
    axes[0].set_xlabel("optimizer step (batch 8)")
    axes[1].set_xlabel("training CPU minutes (decoupled: embedding cache included)")
    axes[0].set_ylabel("monitor 1-point mIoU vs GT (32 held-out scenes)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"students over {len(records)} seeds: mean +/- std")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=85)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:  # as shapes_world.py --quick sets them
        args.student_steps, args.finetune_steps, args.monitor_every, args.heldout = 10, 4, 5, 6
    if not args.teacher.is_file():
        raise SystemExit(f"--teacher: no such file {args.teacher}")
    if not args.aggregate_only:
        with ThreadPoolExecutor(max(1, args.parallel)) as pool:
            codes = list(pool.map(lambda s: run_seed(args, s), args.seeds))
        if any(codes):
            return 1
    records = {s: seed_record(args.out / f"seed{s}") for s in args.seeds}
    summary = summarise(records)
    summary["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    from mobilesam.backends.cpu import cpu_signature

    summary["settings"]["machine"] = cpu_signature()
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    figs = args.out / "figures"
    plot_curves(records, figs / "shapes_seeds_curves.png")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from shapes_seeds_docs import render

    discussion = args.discussion.read_text().strip() if args.discussion else ""
    text = render(summary, records, LABELS, discussion)
    (args.out / "results.md").write_text(text)
    print(text)
    if args.docs:
        dest = REPO / "docs" / "figures"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(figs / "shapes_seeds_curves.png", dest / "shapes_seeds_curves.png")
        seed0 = args.out / f"seed{args.seeds[0]}" / "figures" / "shapes_examples.png"
        if seed0.is_file():
            shutil.copy(seed0, dest / "shapes_examples.png")
        (REPO / "docs" / "results.md").write_text(text)
    if args.ship:
        from shapes_world_report import _load, ship

        seed0 = args.out / f"seed{args.seeds[0]}"
        res = json.loads((seed0 / "results.json").read_text())
        keys = ("teacher", args.ship_student)
        models = {k: _load(seed0 / k / "model.safetensors") for k in keys}
        from shapes_seeds_docs import command_line

        one_line = command_line(summary["settings"]).replace(" \\\n    ", " ")
        ship(models, res, REPO, f"{one_line} --ship --ship-student {args.ship_student}",
             args.ship_student)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
