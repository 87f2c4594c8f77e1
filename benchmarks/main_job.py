"""The main job, whole process: `mobilesam segment` on a photo, per backend, start to PNG.

    .venv/bin/python benchmarks/main_job.py [--backends torch-exact,auto,ort-fp32] [--repeats 5]
        [--checkpoint FILE | (default) --random-weights] [--json out.json]

Prints a table (median / min seconds, speed-up against the first backend, whether
torch was imported, mask IoU with the first backend's) and the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mobilesam.backends.cpu import cpu_signature  # noqa: E402
from mobilesam.bench.main_job import time_main_job  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(REPO / "examples" / "dog.jpg"))
    ap.add_argument("--point", default="400,260")
    ap.add_argument("--backends", default="torch-exact,auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    weights = ["--checkpoint", a.checkpoint] if a.checkpoint else ["--random-weights"]
    backends = a.backends.split(",")
    res = time_main_job(a.image, a.point, backends, weights, a.repeats)
    base = res[backends[0]]["median_s"]
    print(f"CPU: {cpu_signature()}")
    print("| backend | median s | min s | speed-up | imports torch | mask IoU vs first |")
    print("|---|---|---|---|---|---|")
    for b in backends:
        r = res[b]
        print(
            f"| {b} | {r['median_s']:.2f} | {r['min_s']:.2f} | {base / r['median_s']:.2f}x "
            f"| {'yes' if r['imports_torch'] else 'no'} | {r['mask_iou_vs_first']:.4f} |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps({"cpu": cpu_signature(), "results": res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
