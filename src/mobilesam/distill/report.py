"""Training metrics: the JSONL log, a text summary and a PNG of the curves.

``metrics.jsonl`` holds one JSON object per line, ``kind`` ``train`` (step,
epoch, loss, lr, images_per_s, skipped_images) or ``eval`` (step, mse, cosine
on the held-out images; step 0 is the untrained student, ``final`` marks the
end of the run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from ..visualize import save_figure

METRICS = "metrics.jsonl"
CURVES = "curves.png"


class MetricsLog:
    """Append-only JSONL writer (a no-op on ranks other than 0)."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run rewrites them) and any torn last line."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        if step == 0:
            keep = []
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a metrics file (or of a run folder); a torn last line is ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics log")
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def summarize(run_dir: str | Path) -> dict[str, Any]:
    """Key numbers of a run: steps, last loss, throughput, held-out MSE/cosine first and last."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval" and "mse" in r]
    info_path = run_dir / "run.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    out: dict[str, Any] = {
        "run": str(run_dir),
        "student": info.get("config", {}).get("student"),
        "total_steps": info.get("total_steps"),
        "steps_done": train[-1]["step"] if train else 0,
        "finished": (run_dir / "student_encoder.safetensors").is_file(),
    }
    if train:
        out["last_loss"] = train[-1]["loss"]
        out["first_loss"] = train[0]["loss"]
        ips = [r["images_per_s"] for r in train[1:]] or [train[0]["images_per_s"]]
        out["images_per_s"] = sum(ips) / len(ips)
        out["skipped_images"] = train[-1].get("skipped_images", 0)
    if evals:
        first, last = evals[0], evals[-1]
        out.update(
            untrained_mse=first["mse"] if first["step"] == 0 else None,
            untrained_cosine=first["cosine"] if first["step"] == 0 else None,
            heldout_mse=last["mse"],
            heldout_cosine=last["cosine"],
            eval_step=last["step"],
        )
    return out


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"run {summary['run']} (student {summary.get('student')})"]
    status = "finished" if summary["finished"] else "not finished"
    lines.append(f"  steps: {summary['steps_done']} / {summary.get('total_steps')} ({status})")
    if "last_loss" in summary:
        lines.append(
            f"  train loss: {summary['first_loss']:.5g} (first log) -> {summary['last_loss']:.5g}"
        )
        lines.append(f"  throughput: {summary['images_per_s']:.1f} images/s")
        if summary.get("skipped_images"):
            lines.append(f"  unreadable images skipped: {summary['skipped_images']}")
    if "heldout_mse" in summary:
        if summary.get("untrained_mse") is not None:
            lines.append(
                f"  held-out MSE: {summary['untrained_mse']:.5g} (untrained) -> "
                f"{summary['heldout_mse']:.5g} (step {summary['eval_step']})"
            )
            lines.append(
                f"  held-out cosine: {summary['untrained_cosine']:.4f} (untrained) -> "
                f"{summary['heldout_cosine']:.4f}"
            )
        else:
            lines.append(
                f"  held-out MSE {summary['heldout_mse']:.5g}, cosine "
                f"{summary['heldout_cosine']:.4f} (step {summary['eval_step']})"
            )
    return "\n".join(lines)


def plot_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw loss, learning rate, held-out MSE/cosine and throughput against step as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / CURVES
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval" and "mse" in r]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    ax = axes[0][0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train MSE")
    if evals:
        ax.plot([r["step"] for r in evals], [r["mse"] for r in evals], "o-", label="held-out MSE")
    ax.set_yscale("log")
    ax.set_title("embedding MSE")
    ax.legend()
    ax = axes[0][1]
    ax.plot([r["step"] for r in evals], [r["cosine"] for r in evals], "o-", color="tab:green")
    ax.set_title("held-out cosine similarity")
    ax = axes[1][0]
    ax.plot([r["step"] for r in train], [r["lr"] for r in train], color="tab:orange")
    ax.set_title("learning rate")
    ax = axes[1][1]
    ax.plot([r["step"] for r in train], [r["images_per_s"] for r in train], color="tab:red")
    ax.set_title("images / s")
    for a in axes.flat:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    fig.suptitle(f"distillation: {run_dir.name}")
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)
