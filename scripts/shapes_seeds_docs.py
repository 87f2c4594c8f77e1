"""Render ``docs/results.md`` from ``scripts/shapes_seeds.py``'s summary: tables and the answer."""

from __future__ import annotations

import numpy as np

ORDER = ("decoupled", "finetune", "coupled_a", "coupled_b")
#: a difference counts as consistent when every seed agrees on its sign and the mean
#: difference is at least this large (mIoU)
MIN_GAP = 0.01


def _ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    a = np.asarray(values, float)
    sd = a.std(ddof=1) if len(a) > 1 else 0.0
    return f"{a.mean():.3f} ± {sd:.3f}"


def _hits(hits: list[dict | None]) -> str:
    """Monitor mIoU over seeds at a budget, and the mean step it was reached at."""
    hits = [h for h in hits if h]
    if not hits:
        return "n/a"
    return f"{_ms([h['miou'] for h in hits])} at step {np.mean([h['step'] for h in hits]):.0f}"


def _compare(a: list[float], b: list[float], what: str, name_a: str, name_b: str) -> str:
    """One sentence on ``a - b`` over seeds (paired by seed)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) == 0:
        return f"- {what}: no data."
    wins = int((d > 0).sum())
    sd = d.std(ddof=1) if len(d) > 1 else 0.0
    if (d > 0).all() and d.mean() >= MIN_GAP:
        verdict = f"**{name_a} better**"
    elif (d < 0).all() and -d.mean() >= MIN_GAP:
        verdict = f"**{name_b} better**"
    else:
        verdict = "**no consistent difference**"
    return (
        f"- {what}: {name_a} - {name_b} = {d.mean():+.3f} ± {sd:.3f} "
        f"({name_a} ahead in {wins} of {len(d)} seeds): {verdict}."
    )


def render(summary: dict, records: dict, labels: dict, discussion: str = "") -> str:
    s = summary["settings"]
    seeds = summary["seeds"]
    es = summary["equal_steps"]
    ec = summary["equal_compute"]
    n = len(seeds)
    first = records[seeds[0]]["results"]
    objects = first["models"]["teacher"]["eval"]["protocols"]["point"]["objects"]
    rows = []
    for key in ORDER:
        r = es.get(key)
        if not r or not r["point_gt"]:
            continue
        cpu = [c / 60 for c in summary["cost"].get(key, [])]
        rows.append(
            f"| {labels[key]} | {_ms(r['point_teacher'])} | {_ms(r['box_teacher'])} | "
            f"{_ms(r['point_gt'])} | {_ms(r['box_gt'])} | {_ms(cpu)} |"
        )
    t = es["teacher"]
    budget_min = [ec[x]["budget_cpu_s"] / 60 for x in seeds]
    ft_min = [
        ec[x]["finetune_budget_cpu_s"] / 60 for x in seeds if ec[x].get("finetune_budget_cpu_s")
    ]
    comp_rows = []
    for key in ORDER:
        at_decoupled = [ec[x].get(key) for x in seeds]
        at_finetune = [ec[x].get("at_finetune", {}).get(key) for x in seeds]
        own = "(its fine-tuning starts at this budget)"
        cells = [own if key == "finetune" else _hits(at_decoupled), _hits(at_finetune)]
        comp_rows.append(f"| {labels[key]} | {cells[0]} | {cells[1]} |")
    per_seed = []
    for x in seeds:
        m = records[x]["results"]["models"]
        cells = " | ".join(
            f"{m[k]['eval']['protocols']['point']['a_vs_b']:.3f}" if k in m else "n/a"
            for k in ORDER
        )
        per_seed.append(f"| {x} | {cells} |")
    dists = [k for k in first["models"]["teacher"]["eval"]["protocols"] if k.startswith("two_")]
    two_rows = []
    for key in ORDER:
        vals = []
        for d in dists:
            v = [r["results"]["models"][key]["eval"]["protocols"][d]["a_vs_b"]
                 for r in records.values() if key in r["results"]["models"]]  # fmt: skip
            vals.append(f"{np.mean(v):.3f}" if v else "n/a")
        two_rows.append(f"| {labels[key]} | {' | '.join(vals)} |")

    def seeds_of(key: str, metric: str) -> list[float]:
        return es[key][metric]

    def compute_of(key: str, budget: str = "decoupled") -> list[float]:
        rows = [ec[x] if budget == "decoupled" else ec[x].get("at_finetune", {}) for x in seeds]
        return [r[key]["miou"] if r.get(key) else float("nan") for r in rows]

    answer = []
    for metric, what in (("point_teacher", "one point vs teacher"), ("point_gt", "one point vs GT"),
                         ("box_gt", "box vs GT")):  # fmt: skip
        for other in ("coupled_a", "coupled_b"):
            answer.append(
                _compare(seeds_of("decoupled", metric), seeds_of(other, metric),
                         f"equal steps, {what}", "decoupled", other.replace("_", " "))
            )  # fmt: skip
    answer.append(
        _compare(seeds_of("finetune", "point_gt"), seeds_of("decoupled", "point_gt"),
                 "decoder fine-tuning, one point vs GT", "fine-tuned", "decoupled")
    )  # fmt: skip
    for other in ("coupled_a", "coupled_b"):
        answer.append(
            _compare(compute_of("decoupled"), compute_of(other),
                     "equal compute, monitor one point vs GT", "decoupled", other.replace("_", " "))
        )  # fmt: skip
    for other in ("coupled_a", "coupled_b"):
        answer.append(
            _compare(compute_of("finetune", "finetune"), compute_of(other, "finetune"),
                     "equal compute at the fine-tuned student's cost, monitor one point vs GT",
                     "fine-tuned", other.replace("_", " "))
        )  # fmt: skip
    sizes = []
    for key in ("teacher", *ORDER):
        m = first["models"].get(key)
        if m is None or "params" not in m or "latency" not in m:
            continue
        sizes.append(
            f"| {labels[key]} | {m['params']['image_encoder_forward'] / 1e6:.2f}M | "
            f"{m['params']['total_forward'] / 1e6:.2f}M | {m['latency']['encoder_ms']:.1f} | "
            f"{m['latency']['decoder_ms']:.1f} |"
        )
    steps = s["student_steps"]
    teacher_note = f": {s['teacher_note']}" if s.get("teacher_note") else ""
    return f"""# Shapes world: decoupled distillation against coupled training, over {n} seeds

No pretrained SAM can be had here, so this is a world where everything is measurable: a
synthetic scene generator with exact instance masks (`mobilesam.data.shapes`), a small SAM
teacher trained from scratch with SAM's recipe ([teacher.md](teacher.md)), and a TinyViT
student trained four ways from the same initial weights, scenes and schedule:

- **decoupled**: the paper's method: the student encoder learns the teacher's image
  embeddings (MSE, embeddings cached once), then runs with the teacher's prompt encoder and
  mask decoder unchanged;
- **decoupled + decoder fine-tuned**: the paper's optional last step, {s["finetune_steps"]}
  steps of the mask losses on the decoder alone (encoders frozen);
- **coupled (a)**: the student trained end to end on the mask losses, decoder from scratch;
- **coupled (b)**: the same under the teacher's frozen prompt encoder and mask decoder.

```
{command_line(s)}
```

Seeds {", ".join(map(str, seeds))} (a seed sets the student's initial weights and data order;
teacher, {s.get("student_scenes", 1000)} training scenes and {s["heldout"]} held-out scenes
({objects} objects) are shared). Students: {steps} optimizer steps of batch 8, one torch thread
each, {s["parallel"]} seed(s) at a time on `{s["machine"]}`. Cost is training **CPU time**
(process time of the training alone, monitor evaluations excluded), so running seeds side by
side does not bias it. Every number is mean ± sample standard deviation over the seeds.

**Teacher**{teacher_note}. On the held-out scenes: one point {_ms(t["point_gt"])}, box
{_ms(t["box_gt"])} against ground truth (the teacher targets of [teacher.md](teacher.md), 0.80
and 0.88, are not met: the comparison below is not with a strong teacher).

## Equal steps ({steps} steps each), held-out scenes

mIoU against the teacher's masks is the paper's alignment number (the teacher's mask taken as
ground truth); against GT uses the exact scene masks. The fine-tuned row has had
{s["finetune_steps"]} more steps than the others.

| student | 1 pt vs teacher | box vs teacher | 1 pt vs GT | box vs GT | training CPU min |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Per seed, one point vs teacher:

| seed | {" | ".join(labels[k] for k in ORDER)} |
|---|{"---|" * len(ORDER)}
{chr(10).join(per_seed)}

Two points (one foreground at the mask centre, one background at distance d, given for a
1024-pixel image as in the paper and scaled to 256 px), mean over seeds, vs teacher:

| student | {" | ".join(d.split("@")[1] for d in dists)} |
|---|{"---|" * len(dists)}
{chr(10).join(two_rows)}

Size and CPU latency (seed {seeds[0]}'s report: median of 20 runs, batch 1, one thread, 256 px
input, decoder with one point and three masks; measured while the other seeds' runs shared the
two cores, so the milliseconds are rough):

| model | encoder params | total params | encoder ms | decoder ms |
|---|---|---|---|---|
{chr(10).join(sizes)}

## Equal compute

The budget is the decoupled student's whole cost: computing the teacher's embeddings of the
training scenes once plus its training, {_ms(budget_min)} CPU minutes. Each student's number is
its monitor score (one point vs GT, 32 held-out monitor scenes, never used to choose anything)
at the last monitor point within that budget; a coupled student there is mid-schedule, as it
would be if stopped at that cost.

The second column does the same at the fine-tuned student's whole cost (distillation plus
fine-tuning, {_ms(ft_min)} CPU minutes): the paper's full recipe against the others at its price.

| student | monitor 1 pt vs GT at the decoupled cost | at the fine-tuned cost |
|---|---|---|
{chr(10).join(comp_rows)}

![students over seeds: mIoU against steps and against CPU minutes](figures/shapes_seeds_curves.png)

## The answer

A difference is called consistent when every seed agrees on its sign and the mean is at least
{MIN_GAP}; with {n} seeds that is the most these runs can support.

{chr(10).join(answer)}

{discussion}

![held-out scenes, seed {seeds[0]}: ground truth and each model's mask for one point]\
(figures/shapes_examples.png)
"""


def command_line(s: dict) -> str:
    """The command that made these numbers (as run, with --docs)."""
    return (
        f".venv/bin/python scripts/shapes_seeds.py --teacher {s['teacher']} --out {s['out']} \\\n"
        f"    --seeds {' '.join(map(str, s['seeds']))} --parallel {s['parallel']} "
        f"--student-steps {s['student_steps']} --finetune-steps {s['finetune_steps']} --docs"
    )
