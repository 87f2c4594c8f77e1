"""The main job timed as a user meets it: a fresh ``mobilesam segment`` process, start to PNG.

Each backend runs the same command (``python -m mobilesam segment IMAGE --point X,Y
--out ... --overlay ...``) in new processes; the first run of each is a warm-up
(it may convert the model and, for ``auto``, measure the candidates), the rest
are timed whole: interpreter start, imports, loading, encoding, decoding,
writing. Runs are interleaved across backends so machine load spreads evenly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def segment_command(
    image: str, point: str, backend: str, out_dir: Path, weights: Sequence[str]
) -> list[str]:
    return [
        sys.executable, "-m", "mobilesam", "segment", image, "--point", point,
        "--backend", backend, "--out", str(out_dir / f"{backend}.png"),
        "--overlay", str(out_dir / f"{backend}_overlay.png"), *weights,
    ]  # fmt: skip


def time_main_job(
    image: str,
    point: str,
    backends: Sequence[str] = ("torch-exact", "auto"),
    weights: Sequence[str] = ("--random-weights",),
    repeats: int = 3,
    env: dict[str, str] | None = None,
) -> dict[str, dict[str, float | list[float] | bool]]:
    """Median / min wall seconds per backend of whole ``mobilesam segment`` processes.

    Also reports whether each backend's process imported torch (``-X importtime``
    on the last run) and the IoU of its mask with the first backend's.
    """
    given = env or {}
    env = {**os.environ, **given}
    # As a user meets it: Python keeps the modules' compiled bytecode (written by the
    # warm-up run), unless ``env`` itself asks for PYTHONDONTWRITEBYTECODE.
    if "PYTHONDONTWRITEBYTECODE" not in given:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    results: dict[str, dict] = {b: {"seconds": []} for b in backends}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for b in backends:  # warm-up: conversions, the automatic choice, disk caches
            subprocess.run(segment_command(image, point, b, out, weights), env=env,
                           check=True, capture_output=True)  # fmt: skip
        for _ in range(repeats):
            for b in backends:
                t0 = time.perf_counter()
                subprocess.run(segment_command(image, point, b, out, weights), env=env,
                               check=True, capture_output=True)  # fmt: skip
                results[b]["seconds"].append(time.perf_counter() - t0)
        from PIL import Image

        from ..inference.masks import mask_iou

        first = np.array(Image.open(out / f"{backends[0]}.png")) > 0
        for b in backends:
            args = segment_command(image, point, b, out, weights)[1:]
            proc = subprocess.run(
                [sys.executable, "-X", "importtime", *args],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            results[b]["imports_torch"] = any(  # "import time: self | cumulative | name"
                line.rsplit("|", 1)[-1].strip() == "torch" for line in proc.stderr.splitlines()
            )
            mask = np.array(Image.open(out / f"{b}.png")) > 0
            results[b]["mask_iou_vs_first"] = float(mask_iou(first, mask))
            secs = results[b]["seconds"]
            results[b]["median_s"] = float(np.median(secs))
            results[b]["min_s"] = float(np.min(secs))
    return results
