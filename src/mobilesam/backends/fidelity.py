"""Fidelity of a backend, measured on masks against the exact path.

A fixed evaluation per photo: an 8x8 grid of single-point prompts, four boxes
and a refinement (the best low-res output of a click fed back as mask input).
A backend is *faithful* when the masks' IoU with the exact path's averages at
least 0.98 with none below 0.90; an fp32 backend should also stay within the
parity tolerances (embedding 1.3e-5, low-res logits 1.4e-4), reported as
``within_parity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..inference.core import PredictorCore
from ..inference.masks import mask_iou

MEAN_IOU, MIN_IOU = 0.98, 0.90
EMBEDDING_TOL, LOW_RES_TOL = 1.3e-5, 1.4e-4


@dataclass
class FidelityReport:
    iou_mean: float
    iou_min: float
    max_low_res_diff: float
    max_embedding_diff: float
    masks: int
    faithful: bool
    within_parity: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompts_for(h: int, w: int) -> list[dict[str, Any]]:
    """The fixed prompts: 64 grid points and four boxes (original-image pixels)."""
    grid = [(w * (i + 0.5) / 8, h * (j + 0.5) / 8) for j in range(8) for i in range(8)]
    out: list[dict[str, Any]] = [
        {"point_coords": np.array([p]), "point_labels": np.array([1])} for p in grid
    ]
    for x0, y0, x1, y1 in (
        (0.1, 0.1, 0.6, 0.7),
        (0.3, 0.2, 0.9, 0.9),
        (0, 0, 1, 1),
        (0.4, 0.4, 0.6, 0.6),
    ):
        out.append({"box": np.array([x0 * w, y0 * h, x1 * w, y1 * h])})
    return out


def _as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


@dataclass
class Reference:
    """The exact path's outputs on the fixed evaluation, computed once for all candidates."""

    images: list[np.ndarray]
    embeddings: list[np.ndarray]
    outputs: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]  # per image, per prompt

    @classmethod
    def compute(cls, exact: PredictorCore, images: Sequence[np.ndarray]) -> Reference:
        embeddings, outputs = [], []
        for image in images:
            exact.set_image(image)
            embeddings.append(_as_numpy(exact.get_image_embedding()))
            prompts = prompts_for(*image.shape[:2])
            outs = [exact.predict(**p) for p in prompts]
            first = outs[0]
            refine = {**prompts[0], "mask_input": first[2][int(np.argmax(first[1]))][None]}
            outs.append(exact.predict(**refine))
            outputs.append(outs)
        return cls(list(images), embeddings, outputs)

    def prompts(self, index: int) -> list[dict[str, Any]]:
        """Image ``index``'s prompts in evaluation order (the refinement last)."""
        prompts = prompts_for(*self.images[index].shape[:2])
        first = self.outputs[index][0]
        refine = {**prompts[0], "mask_input": first[2][int(np.argmax(first[1]))][None]}
        return prompts + [refine]


def evaluate(
    reference: Reference, candidate: PredictorCore, exact_fp32: bool = False
) -> FidelityReport:
    """Score ``candidate`` against the exact path's outputs on the reference's images.

    ``exact_fp32`` also requires the parity tolerances (for fp32 backends). The
    refinement feeds both sides the *exact* path's low-res logits, so
    differences do not compound.
    """
    ious: list[float] = []
    low_diff = emb_diff = 0.0
    for i, image in enumerate(reference.images):
        candidate.set_image(image)
        e_can = _as_numpy(candidate.get_image_embedding())
        emb_diff = max(emb_diff, float(np.abs(reference.embeddings[i] - e_can).max()))
        for prompt, (m_ref, _, l_ref) in zip(reference.prompts(i), reference.outputs[i]):
            m_can, _, l_can = candidate.predict(**prompt)
            low_diff = max(low_diff, float(np.abs(l_ref - l_can).max()))
            ious.extend(float(mask_iou(a, b)) for a, b in zip(m_ref, m_can))
    arr = np.asarray(ious)
    mean, low = float(arr.mean()), float(arr.min())
    within = emb_diff <= EMBEDDING_TOL and low_diff <= LOW_RES_TOL
    faithful = mean >= MEAN_IOU and low >= MIN_IOU and (within or not exact_fp32)
    return FidelityReport(mean, low, low_diff, emb_diff, len(ious), faithful, within)
