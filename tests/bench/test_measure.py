"""bench.measure: timing statistics, interleaved timing order, counted FLOPs."""

from __future__ import annotations

import math

import torch

from mobilesam.bench.measure import Timing, count_flops, matmul_peak, round_robin, time_call


def test_timing_statistics_and_json():
    t = Timing([0.5, 0.125, 0.25, 2.0])  # binary fractions: exact arithmetic
    assert t.min == 0.125 and t.median == 0.375
    assert t.to_json() == {"min_ms": 125.0, "median_ms": 375.0, "runs": 4}
    empty = Timing()
    assert math.isnan(empty.min) and math.isnan(empty.median)


def test_time_call_returns_the_result():
    seconds, result = time_call(lambda: sum(range(10)))
    assert result == 45 and seconds >= 0


def test_round_robin_interleaves_and_warms_up():
    calls: list[str] = []
    ticks: list[int] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    timings = round_robin(fns, repeats=2, warmup=1, progress=lambda: ticks.append(1))
    # warm-up runs each call once, then the timed runs alternate a, b, c, a, b, c
    assert calls == ["a", "b", "c"] + ["a", "b", "c"] * 2
    assert {k: len(v.samples) for k, v in timings.items()} == {"a": 2, "b": 2, "c": 2}
    assert len(ticks) == 6
    assert all(s >= 0 for t in timings.values() for s in t.samples)


def test_count_flops_counts_a_multiply_add_as_two():
    layer = torch.nn.Linear(8, 5, bias=False)
    x = torch.zeros(3, 8)
    assert count_flops(lambda: layer(x)) == 2 * 3 * 8 * 5
    conv = torch.nn.Conv2d(2, 4, kernel_size=3, padding=1, bias=False)
    img = torch.zeros(1, 2, 6, 6)
    assert count_flops(lambda: conv(img)) == 2 * (6 * 6) * 4 * (2 * 3 * 3)
    assert count_flops(lambda: torch.relu(x)) == 0  # elementwise ops are not counted


def test_matmul_peak_reports_the_measured_rate():
    peak = matmul_peak(size=64, repeats=2, seconds=1.0)
    assert peak["size"] == 64 and peak["seconds"] > 0
    assert math.isclose(peak["gflops"], 2 * 64**3 / peak["seconds"] / 1e9)
    assert peak["threads"] == torch.get_num_threads()
