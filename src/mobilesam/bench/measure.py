"""Timing, FLOP counting and the machine's matmul peak, for the benchmark suite."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timing:
    """Wall-clock seconds of repeated calls."""

    samples: list[float] = field(default_factory=list)

    @property
    def min(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "min_ms": round(self.min * 1e3, 3),
            "median_ms": round(self.median * 1e3, 3),
            "runs": len(self.samples),
        }


def time_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def round_robin(
    calls: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    progress: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time every call ``repeats`` times, interleaved (a, b, c, a, b, c, ...).

    Interleaving spreads the load of a shared machine over all backends, so
    the ratios measured in one run stay fair even when absolute times drift.
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    timings = {name: Timing() for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            seconds, _ = time_call(fn)
            timings[name].samples.append(seconds)
            if progress is not None:
                progress()
    return timings


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call as torch's FlopCounterMode counts them.

    Counted: matmuls, convolutions (incl. transposed) and attention; a
    multiply-add is 2 FLOPs. Not counted: elementwise ops, norms, softmax,
    interpolation, which are memory-bound and small next to the matmuls here.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak(size: int = 1024, repeats: int = 10, seconds: float = 2.0) -> dict[str, float]:
    """Measured float32 matmul throughput of this machine (torch, current threads).

    Best of ``repeats`` timings of a ``size``-square matmul (bounded by
    ``seconds``): the achievable peak the FLOP/s of each backend is compared
    with.
    """
    import torch

    a = torch.randn(size, size)
    b = torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    for _ in range(repeats):
        t, _ = time_call(lambda: torch.mm(a, b, out=out))
        best = min(best, t)
        if time.perf_counter() > deadline:
            break
    flops = 2.0 * size**3
    return {
        "size": size,
        "seconds": best,
        "gflops": flops / best / 1e9,
        "threads": torch.get_num_threads(),
    }
