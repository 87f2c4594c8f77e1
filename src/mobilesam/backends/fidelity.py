"""How faithful a backend is: its masks against the exact path's on a fixed evaluation.

The evaluation, per photo: an 8x8 grid of single foreground points (three
masks each), four boxes (one mask each) and a refinement step (each path's
own best low-res output of four grid points fed back with the point, one
mask each), i.e. 64x3 + 4 + 4 = 200 masks per photo. Both paths encode the
photo themselves, so encoder and decoder errors add up as they do for a user.

A backend is *faithful* when its masks agree with the exact path's at IoU
mean >= 0.98 and min >= 0.90 (:data:`FAITHFUL_IOU_MEAN`, :data:`FAITHFUL_IOU_MIN`).
Float32 backends are also held to the parity tolerances: ``within_parity``.
Those tolerances (embedding 1.3e-5, low-res logits 1.4e-4) were set on the
parity fixtures' outputs, whose largest magnitudes are 1.22 (embedding) and
10.6 (low-res logits); float32 rounding grows with the values rounded, so on
outputs larger than that the tolerance grows in proportion (never shrinks). A
model whose embedding reaches 3.7, for instance, is held to 4.0e-5. Both rules
are reported; neither implies the other on every model.

Backends are given as :class:`~mobilesam.inference.core.PredictorCore` or as
``(encoder, decoder)`` pairs; everything compared is numpy, so torch-free
backends are measured like the torch ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.core import PredictorCore

FAITHFUL_IOU_MEAN = 0.98
FAITHFUL_IOU_MIN = 0.90
PARITY_EMBEDDING = 1.3e-5
PARITY_LOW_RES = 1.4e-4
# largest |value| of the parity fixtures' outputs the two tolerances were set on
PARITY_EMBEDDING_SCALE = 1.22
PARITY_LOW_RES_SCALE = 10.6


def parity_tolerance(tolerance: float, fixture_scale: float, output_scale: float) -> float:
    """``tolerance`` grown in proportion to outputs larger than the fixtures' (never shrunk)."""
    return tolerance * max(1.0, output_scale / fixture_scale)


@dataclass(frozen=True)
class Fidelity:
    """A candidate's agreement with the reference over the evaluation's ``masks`` masks."""

    mask_iou_mean: float
    mask_iou_min: float
    low_res_max_abs: float  # max |low-res logit difference| over every mask
    embedding_max_abs: float
    iou_pred_max_abs: float  # max |predicted IoU score difference|
    masks: int
    faithful: bool  # the IoU rule
    within_parity: bool  # the float32 parity tolerances
    embedding_tolerance: float = PARITY_EMBEDDING  # as scaled for this model's outputs
    low_res_tolerance: float = PARITY_LOW_RES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _core(backend: PredictorCore | tuple[Any, Any]) -> PredictorCore:
    return backend if isinstance(backend, PredictorCore) else PredictorCore(*backend)


def _numpy(x: Any) -> np.ndarray:
    """Embeddings as float32 numpy (torch tensors of any float dtype included)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, np.float32)


def grid_points(h: int, w: int, side: int = 8) -> np.ndarray:
    """side^2 cell centres of an HxW image, XY, as side^2 x 1 x 2 (one point per prompt set)."""
    ticks = (np.arange(side) + 0.5) / side
    return np.stack(np.meshgrid(ticks * w, ticks * h), -1).reshape(-1, 1, 2)


def eval_boxes(h: int, w: int) -> np.ndarray:
    """Four XYXY boxes: large, centred, and two off-centre quarters."""
    rel = np.array(
        [
            [0.05, 0.05, 0.95, 0.95],
            [0.25, 0.25, 0.75, 0.75],
            [0.10, 0.40, 0.55, 0.95],
            [0.45, 0.05, 0.95, 0.60],
        ]
    )
    return rel * np.array([w, h, w, h])


def _predictions(core: PredictorCore, image: np.ndarray, side: int) -> dict[str, Any]:
    """Every output of the evaluation for one photo (numpy)."""
    core.set_image(image)
    h, w = image.shape[:2]
    pts = grid_points(h, w, side)
    ones = np.ones(pts.shape[:2])
    out: dict[str, Any] = {"embedding": _numpy(core.get_image_embedding())}
    out["grid"] = core.predict_batch([pts], [ones])[0]
    out["boxes"] = core.predict_batch(box_batch=[eval_boxes(h, w)], multimask_output=False)[0]
    refined = []
    for k in np.linspace(0, len(pts) - 1, 4).round().astype(int):
        _, scores, low = (a[k] for a in out["grid"])
        refined.append(
            core.predict(
                pts[k],
                ones[k],
                mask_input=low[np.argmax(scores)][None],
                multimask_output=False,
            )
        )
    out["refine"] = tuple(np.stack(parts) for parts in zip(*refined))
    return out


def evaluate(
    backend: PredictorCore | tuple[Any, Any], images: Sequence[np.ndarray], grid: int = 8
) -> list[dict[str, Any]]:
    """The evaluation's outputs of one backend, per image (compare two with :func:`compare`)."""
    if len(images) == 0:
        raise ValueError("the fidelity evaluation needs at least one image")
    core = _core(backend)
    return [_predictions(core, image, grid) for image in images]


def compare(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> Fidelity:
    """A candidate's :func:`evaluate` outputs against the reference's."""
    from ..inference.masks import mask_iou

    ious: list[np.ndarray] = []
    emb = low = score = emb_scale = low_scale = 0.0
    for g, w in zip(got, want, strict=True):
        emb = max(emb, float(np.abs(g["embedding"] - w["embedding"]).max()))
        emb_scale = max(emb_scale, float(np.abs(w["embedding"]).max()))
        for key in ("grid", "boxes", "refine"):
            (gm, gs, gl), (wm, ws, wl) = g[key], w[key]
            ious.append(np.asarray(mask_iou(gm, wm), np.float64).ravel())
            score = max(score, float(np.abs(gs - ws).max()))
            low = max(low, float(np.abs(gl - wl).max()))
            low_scale = max(low_scale, float(np.abs(wl).max()))
    all_ious = np.concatenate(ious)
    mean, least = float(all_ious.mean()), float(all_ious.min())
    emb_tol = parity_tolerance(PARITY_EMBEDDING, PARITY_EMBEDDING_SCALE, emb_scale)
    low_tol = parity_tolerance(PARITY_LOW_RES, PARITY_LOW_RES_SCALE, low_scale)
    return Fidelity(
        mask_iou_mean=mean,
        mask_iou_min=least,
        low_res_max_abs=low,
        embedding_max_abs=emb,
        iou_pred_max_abs=score,
        masks=int(all_ious.size),
        faithful=mean >= FAITHFUL_IOU_MEAN and least >= FAITHFUL_IOU_MIN,
        within_parity=emb <= emb_tol and low <= low_tol,
        embedding_tolerance=emb_tol,
        low_res_tolerance=low_tol,
    )


def measure_fidelity(
    candidate: PredictorCore | tuple[Any, Any],
    reference: PredictorCore | tuple[Any, Any],
    images: Sequence[np.ndarray],
    grid: int = 8,
) -> Fidelity:
    """Score ``candidate`` against ``reference`` (normally ``torch-exact``) on ``images``.

    images: HxWx3 uint8 RGB photos (any size). grid: the point grid's side.
    """
    return compare(evaluate(candidate, images, grid), evaluate(reference, images, grid))


def example_photos(limit: int = 3) -> list[np.ndarray]:
    """The repository's ``examples/*.jpg`` (up to ``limit``), else one synthetic picture."""
    from ..io import read_image

    folder = Path(__file__).resolve().parents[3] / "examples"
    paths = sorted(folder.glob("*.jpg"))[:limit] if folder.is_dir() else []
    if paths:
        return [read_image(p) for p in paths]
    from ..export.onnx import synthetic_image

    return [synthetic_image(768, 1024)]


def backend_fidelity(
    name: str, ctx: Any, images: Sequence[np.ndarray] | None = None, grid: int = 8
) -> Fidelity:
    """Registered backend ``name`` against ``torch-exact``, both loaded from ``ctx``.

    Makes the candidate's artifacts first where ``ctx.artifacts`` lacks any.
    """
    from .registry import get_backend

    spec = get_backend(name)
    if spec.convert is not None and not all((ctx.artifacts / a).is_file() for a in spec.artifacts):
        ctx.artifacts.mkdir(parents=True, exist_ok=True)
        spec.convert(ctx)
    reference = get_backend("torch-exact").load(ctx)
    return measure_fidelity(spec.load(ctx), reference, images or example_photos(), grid)
