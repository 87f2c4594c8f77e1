"""Single-click latency: one photo, many clicks, per backend, hot and interleaved.

    .venv/bin/python benchmarks/click.py [--backends torch-exact,torch-optimised]
        [--clicks 40] [--rounds 3] [--json out.json]

A user clicking on a photo sends one point at a time to a predictor whose image is
already set. Each click here is ``predict`` with one positive point (three masks,
low-res and full-size, thresholded), at points cycling over a 4x4 grid of the photo.
Two regimes, both measured in this one run:

* **hot**: a backend answers ``--clicks`` clicks in a row (what one user clicking
  sees when nothing else runs);
* **interleaved**: the backends take turns click by click (as ``mobilesam bench``
  times them), so each click finds the caches filled by another backend's work.

Prints median / min ms and the speed-up against the first backend for both, with
the CPU; random vit_t weights (seed 0) unless ``--checkpoint``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mobilesam.backends.cpu import cpu_signature  # noqa: E402


def _points(shape: tuple[int, ...], n: int) -> list[np.ndarray]:
    h, w = shape[:2]
    grid = [np.array([[w * (i + 0.5) / 4, h * (j + 0.5) / 4]]) for j in range(4) for i in range(4)]
    return [grid[k % len(grid)] for k in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(REPO / "examples" / "dog.jpg"))
    ap.add_argument("--backends", default="torch-exact,torch-optimised")
    ap.add_argument("--clicks", type=int, default=40, help="timed clicks per backend and regime")
    ap.add_argument("--rounds", type=int, default=3, help="hot/interleaved rounds, alternated")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--png", default=None, help="bar chart of the medians")
    a = ap.parse_args()

    import torch

    from mobilesam.bench.backends import TORCH_PREDICTORS, registry_backend, torch_backend
    from mobilesam.io import read_image
    from mobilesam.loading import load_model

    torch.manual_seed(0)  # the random weights, when no checkpoint is given
    model = load_model("vit_t", a.checkpoint, random_weights=a.checkpoint is None)
    image = read_image(a.image)
    names = a.backends.split(",")
    tmp = tempfile.mkdtemp(prefix="click-")  # converted artifacts of non-torch backends
    backends = {
        n: torch_backend(model, n == "torch-optimised")
        if n in TORCH_PREDICTORS
        else registry_backend(n, model, tmp)
        for n in names
    }
    for b in backends.values():
        b.set_image(image)
    shutil.rmtree(tmp, ignore_errors=True)  # loaded: the sessions no longer read the files
    points = _points(image.shape, a.clicks)
    times: dict[str, dict[str, list[float]]] = {n: {"hot": [], "interleaved": []} for n in names}

    def click(name: str, p: np.ndarray) -> float:
        t = time.perf_counter()
        backends[name].predict_one(p[0])
        return (time.perf_counter() - t) * 1e3

    for name in names:  # warm-up: the decoder's per-image state, allocations
        for p in points[:4]:
            click(name, p)
    for _ in range(a.rounds):
        for name in names:
            times[name]["hot"] += [click(name, p) for p in points]
        for p in points:
            for name in names:
                times[name]["interleaved"].append(click(name, p))

    base = {r: statistics.median(times[names[0]][r]) for r in ("hot", "interleaved")}
    print(f"CPU: {cpu_signature()}, torch threads: {torch.get_num_threads()}")
    print(f"image {a.image} {image.shape[1]}x{image.shape[0]}, {a.rounds} x {a.clicks} clicks")
    print("| backend | hot median / min ms | speed-up | interleaved median / min ms | speed-up |")
    print("|---|---|---|---|---|")
    summary = {}
    for name in names:
        row = {}
        for r in ("hot", "interleaved"):
            ts = times[name][r]
            row[r] = {"median_ms": statistics.median(ts), "min_ms": min(ts), "n": len(ts)}
            row[r]["speedup"] = base[r] / row[r]["median_ms"]
        summary[name] = row
        h, i = row["hot"], row["interleaved"]
        print(
            f"| {name} | {h['median_ms']:.1f} / {h['min_ms']:.1f} | {h['speedup']:.2f}x "
            f"| {i['median_ms']:.1f} / {i['min_ms']:.1f} | {i['speedup']:.2f}x |"
        )
    if a.json:
        record = {"cpu": cpu_signature(), "image": a.image, "results": summary}
        Path(a.json).write_text(json.dumps(record, indent=2))
    if a.png:
        draw(summary, Path(a.png), cpu_signature())
    return 0


def draw(summary: dict[str, dict], path: Path, cpu: str) -> None:
    """Median click time per backend, hot and interleaved, with the speed-ups written on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(names), 3.6))
    for k, (regime, colour) in enumerate((("hot", "#1f77b4"), ("interleaved", "#ff7f0e"))):
        ms = [summary[n][regime]["median_ms"] for n in names]
        bars = ax.bar(x + (k - 0.5) * 0.38, ms, 0.38, label=regime, color=colour)
        for bar, n in zip(bars, names, strict=True):
            ax.annotate(
                f"{summary[n][regime]['speedup']:.2f}x",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center", va="bottom", fontsize=8,
            )  # fmt: skip
    ax.set_xticks(x, names)
    ax.set_ylabel("ms per click (median)")
    ax.set_title(f"single click, {cpu}", fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
