"""Choosing a backend on this machine: convert, time briefly, check fidelity, remember.

:func:`choose` runs once per model and machine (artifacts keyed as in
:mod:`.artifacts`): every backend this machine can run is converted if needed,
loaded, timed on the encoder and on one click, and scored against the exact
path on masks (:mod:`.fidelity`); the fastest *faithful* one wins and the
choice is written to ``choice.json`` beside the artifacts. A backend that
fails to convert or load is skipped with a one-line warning.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..inference.core import PredictorCore
from .artifacts import ArtifactStore
from .fidelity import compare, evaluate
from .registry import BackendSpec, LoadContext, get_backend, list_backends


@dataclass
class Measurement:
    """One backend's brief timing (median ms) and fidelity against the exact path."""

    backend: str
    precision: str
    needs_torch: bool
    encoder_ms: float | None = None
    click_ms: float | None = None
    faithful: bool = False
    fidelity: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def total_ms(self) -> float:
        """One image and one click: what the main job costs."""
        return (self.encoder_ms or float("inf")) + (self.click_ms or float("inf"))


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times))


def _warn(message: str) -> None:
    print(f"mobilesam: warning: {message}", file=sys.stderr)


def time_predictor(core: PredictorCore, image: np.ndarray, repeats: int = 3) -> tuple[float, float]:
    """(encoder ms, one-click ms) medians after one warm-up each."""
    resized, _ = core.prepare_image(image)
    core.encoder.encode([resized])  # warm-up (first runs allocate, compile, cache)
    enc = _median_ms(lambda: core.encoder.encode([resized]), repeats)
    core.set_image(image)
    h, w = image.shape[:2]
    click = {"point_coords": np.array([[w * 0.5, h * 0.5]]), "point_labels": np.array([1])}
    core.predict(**click)
    return enc, _median_ms(lambda: core.predict(**click), max(repeats, 5))


def measure(
    spec: BackendSpec,
    store: ArtifactStore,
    ctx: LoadContext,
    image: np.ndarray,
    reference: list[dict[str, Any]],
    repeats: int = 3,
) -> Measurement:
    """Convert (if needed), load, time and score one backend; errors are recorded, not raised."""
    m = Measurement(spec.name, spec.precision, spec.needs_torch)
    try:
        store.ensure(spec, ctx)
        enc, dec = spec.load(ctx)  # ctx.artifacts is the store's folder
        core = PredictorCore(enc, dec)
        m.encoder_ms, m.click_ms = time_predictor(core, image, repeats)
        report = compare(evaluate(core, [image]), reference)
        m.fidelity = report.to_json()
        # fp32 backends compute the same function: they must also stay within parity.
        parity = report.within_parity or spec.precision != "fp32"
        m.faithful = bool(spec.exact or (report.faithful and parity))
    except Exception as e:  # noqa: BLE001 - any backend failure means: skip it
        m.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
        _warn(f"backend {spec.name} skipped ({m.error})")
        if ctx.options.get("debug"):
            traceback.print_exc()
    return m


#: Not measured by the automatic choice unless asked for by name: on our measurements the int8
#: encoders are not faithful (mask IoU min 0.88-0.90, docs/benchmarks.md) and the calibrated
#: one needs gigabytes while it calibrates. ``mobilesam bench`` measures them.
AUTO_EXCLUDED_PRECISIONS = ("int8",)


def available(names: Sequence[str] | None = None) -> tuple[list[BackendSpec], dict[str, str]]:
    """(specs this machine can run, {name: why not} for the others).

    Without ``names``: every registered backend except int8 ones (see above).
    """
    runnable, skipped = [], {}
    for name in names or list_backends():
        spec = get_backend(name)
        if names is None and spec.precision in AUTO_EXCLUDED_PRECISIONS:
            skipped[name] = "int8: not an automatic candidate (not faithful in our measurements)"
            continue
        why = spec.check()
        if why is None:
            runnable.append(spec)
        else:
            skipped[name] = why
    return runnable, skipped


def choose(
    store: ArtifactStore,
    ctx: LoadContext,
    image: np.ndarray,
    names: Sequence[str] | None = None,
    repeats: int = 3,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure every runnable backend, pick the fastest faithful one, write ``choice.json``."""
    from tqdm import tqdm

    specs, skipped = available(names)
    exact = get_backend("torch-exact")
    reference = evaluate(PredictorCore(*exact.load(ctx)), [image])
    results: list[Measurement] = []
    bar = tqdm(specs, desc="choosing a backend", unit="backend", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        results.append(measure(spec, store, ctx, image, reference, repeats))
    usable = [m for m in results if m.error is None and m.faithful]
    if not usable:
        raise RuntimeError(
            "no backend could run this model faithfully: "
            + "; ".join(f"{m.backend}: {m.error or 'not faithful'}" for m in results)
        )
    best = min(usable, key=lambda m: m.total_ms)
    choice = {
        "backend": best.backend,
        "needs_torch": best.needs_torch,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "key": store.key,
        "candidates": [asdict(m) for m in results],
        "unavailable": skipped,
    }
    store.write_choice(choice)
    return choice
