"""Alignment evaluation: how well model A's masks agree with reference B's (and with GT).

The paper's protocols, with the choices it leaves open fixed as follows:

* **Objects.** With ground truth, every ground-truth instance mask of an image. Without
  it, the reference model B's own masks: B is prompted with a ``grid`` x ``grid`` lattice
  of points (cell centres), keeps its highest-predicted-IoU mask per point, and masks
  with predicted IoU >= ``min_pred_iou``, area >= ``min_area`` of the image and IoU < 0.8
  with an already kept mask become the objects.
* **Prompts** come from each object's mask (see :mod:`mobilesam.evaluation.prompts`):
  ``point`` = distance-transform maximum; ``box`` = tight box; ``two_points@d`` =
  that point plus a background point ``d`` pixels away. ``d`` is given for an image with a
  ``distance_frame``-pixel long side (1024, SAM's input) and scaled by
  ``long side / distance_frame`` for each image (``distance_frame=0``: no scaling).
* **Outputs.** One point: multimask output, the mask with the highest predicted IoU.
  Box and two points: the single-mask output (SAM's choice for unambiguous prompts).
* **IoU** is computed at the original image resolution (masks thresholded at 0 after
  SAM's post-processing) by :func:`mobilesam.inference.masks.mask_iou`; mIoU is the
  mean over objects of all images.

A and B receive identical prompts; ``a_vs_b`` is the paper's alignment number
(B's mask taken as ground truth), ``a_vs_gt`` / ``b_vs_gt`` exist where GT exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.masks import mask_iou
from .metrics import mean_iou
from .prompts import center_point, mask_box, two_points


@dataclass
class EvalConfig:
    """Settings of an alignment evaluation (see the module docstring)."""

    protocols: tuple[str, ...] = ("point", "box", "two_points")
    distances: tuple[float, ...] = (100.0, 200.0, 300.0, 400.0, 500.0)
    distance_frame: int = 1024
    grid: int = 4
    min_pred_iou: float = 0.7
    min_area: float = 0.002
    max_objects: int = 64

    def __post_init__(self) -> None:
        unknown = set(self.protocols) - {"point", "box", "two_points"}
        if unknown or not self.protocols:
            raise ValueError(f"protocols must be among point, box, two_points; got {unknown}")
        if any(d <= 0 for d in self.distances):
            raise ValueError("distances must be positive")


@dataclass
class _Prompt:
    name: str
    coords: np.ndarray | None = None  # Nx2 (x, y) in the image frame
    labels: np.ndarray | None = None
    box: np.ndarray | None = None  # XYXY in the image frame


class MaskPredictor:
    """One model bound to one image at a time: prompt in the image frame -> HxW bool mask."""

    def __init__(self, model: Any) -> None:
        from ..inference.predictor import SamPredictor

        self.predictor = SamPredictor(model)

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict(self, prompt: _Prompt) -> tuple[np.ndarray, float]:
        """The kept mask (HxW bool) and its predicted IoU."""
        multimask = prompt.box is None and prompt.coords is not None and len(prompt.coords) == 1
        masks, iou, _ = self.predictor.predict(
            point_coords=prompt.coords,
            point_labels=prompt.labels,
            box=prompt.box,
            multimask_output=multimask,
        )
        k = int(np.argmax(iou))
        return masks[k].astype(bool), float(iou[k])


def grid_objects(ref: MaskPredictor, shape: tuple[int, int], cfg: EvalConfig) -> list[np.ndarray]:
    """Reference objects from B's single-point masks on a grid (image already set)."""
    h, w = shape
    kept: list[np.ndarray] = []
    for gy in range(cfg.grid):
        for gx in range(cfg.grid):
            pt = np.array([[(gx + 0.5) * w / cfg.grid, (gy + 0.5) * h / cfg.grid]])
            mask, score = ref.predict(_Prompt("grid", pt, np.array([1])))
            if score < cfg.min_pred_iou or mask.sum() < cfg.min_area * h * w:
                continue
            if any(mask_iou(mask, k) >= 0.8 for k in kept):
                continue
            kept.append(mask)
    return kept


def object_prompts(mask: np.ndarray, cfg: EvalConfig, image_shape: tuple[int, int]) -> list:
    """The protocol prompts of one object mask; a two-point prompt may be None (skipped)."""
    out: list[tuple[str, _Prompt | None]] = []
    if "point" in cfg.protocols:
        out.append(("point", _Prompt("point", center_point(mask)[None], np.array([1]))))
    if "box" in cfg.protocols:
        out.append(("box", _Prompt("box", box=mask_box(mask))))
    if "two_points" in cfg.protocols:
        scale = max(image_shape) / cfg.distance_frame if cfg.distance_frame else 1.0
        for d in cfg.distances:
            name = f"two_points@{d:g}"
            tp = two_points(mask, d * scale)
            out.append((name, None if tp is None else _Prompt(name, tp[0], tp[1])))
    return out


def evaluate_alignment(
    model: Any,
    images: Iterable[tuple[str, np.ndarray, np.ndarray | None]],
    reference: Any | None = None,
    config: EvalConfig | None = None,
    progress: bool = True,
    total: int | None = None,
) -> dict[str, Any]:
    """mIoU of ``model``'s masks against ``reference``'s and against ground truth.

    ``images`` yields ``(key, HxWx3 uint8 RGB, NxHxW bool GT masks or None)``. Without a
    reference model every image needs GT. Returns ``{"config", "images", "protocols":
    {name: {"objects", "skipped", "a_vs_b", "a_vs_gt", "b_vs_gt"}}}`` (absent comparisons
    are omitted).
    """
    from tqdm import tqdm

    cfg = config or EvalConfig()
    a = MaskPredictor(model)
    b = MaskPredictor(reference) if reference is not None else None
    scores: dict[str, dict[str, list[float]]] = {}
    skipped: dict[str, int] = {}
    n_images = 0
    for key, image, gt in tqdm(images, desc="eval", unit="img", total=total, disable=not progress):
        n_images += 1
        h, w = image.shape[:2]
        a.set_image(image)
        if b is not None:
            b.set_image(image)
        if gt is not None:
            if gt.shape[1:] != (h, w):
                raise ValueError(f"{key}: GT masks are {gt.shape[1:]}, image is {(h, w)}")
            objects = [m for m in gt.astype(bool) if m.any()]
        elif b is not None:
            objects = grid_objects(b, (h, w), cfg)
        else:
            raise ValueError(f"{key}: no ground truth and no reference model")
        for obj_index, obj in enumerate(objects[: cfg.max_objects]):
            for name, prompt in object_prompts(obj, cfg, (h, w)):
                rec = scores.setdefault(name, {})
                if prompt is None:
                    skipped[name] = skipped.get(name, 0) + 1
                    continue
                ma, _ = a.predict(prompt)
                if b is not None:
                    mb, _ = b.predict(prompt)
                    rec.setdefault("a_vs_b", []).append(mask_iou(ma, mb))
                if gt is not None:
                    rec.setdefault("a_vs_gt", []).append(mask_iou(ma, obj))
                    if b is not None:
                        rec.setdefault("b_vs_gt", []).append(mask_iou(mb, obj))
                rec.setdefault("_n", []).append(float(obj_index))
    protocols: dict[str, dict[str, Any]] = {}
    for name, rec in scores.items():
        entry: dict[str, Any] = {"objects": len(rec.get("_n", [])), "skipped": skipped.get(name, 0)}
        for k, v in rec.items():
            if not k.startswith("_"):
                entry[k] = mean_iou(v)
        protocols[name] = entry
    return {"config": asdict(cfg), "images": n_images, "protocols": protocols}


def format_table(result: dict[str, Any], names: Sequence[str] = ("A", "B")) -> str:
    """A plain-text table of :func:`evaluate_alignment`'s result."""
    a, b = names
    cols = [("a_vs_b", f"{a} vs {b}"), ("a_vs_gt", f"{a} vs GT"), ("b_vs_gt", f"{b} vs GT")]
    present = [(k, t) for k, t in cols if any(k in p for p in result["protocols"].values())]
    header = f"{'protocol':<20}{'objects':>8}{'skipped':>8}" + "".join(
        f"{t:>14}" for _, t in present
    )
    lines = [header, "-" * len(header)]
    for name, p in result["protocols"].items():
        vals = "".join(f"{p.get(k, float('nan')):>14.4f}" for k, _ in present)
        lines.append(f"{name:<20}{p['objects']:>8}{p['skipped']:>8}{vals}")
    lines.append(f"({result['images']} images; mIoU at the original image resolution)")
    return "\n".join(lines)


def iter_image_folder(
    folder: str | Path, gt_folder: str | Path | None = None, limit: int | None = None
) -> list[tuple[str, Path, Path | None]]:
    """Images of a folder (sorted, recursive) with their GT file ``<gt>/<stem>.npz`` if any."""
    from ..distill.sources import folder_source

    source = folder_source(folder)
    items = []
    for item in source.items[: limit or None]:
        gt = None
        if gt_folder is not None:
            cand = Path(gt_folder) / Path(item.key).with_suffix(".npz")
            gt = cand if cand.is_file() else None
        items.append((item.key, item.path, gt))
    return items


def load_items(
    items: Sequence[tuple[str, Path, Path | None]], require_gt: bool = False
) -> Iterable[tuple[str, np.ndarray, np.ndarray | None]]:
    """Decode listed images (RGB uint8) and GT masks (``masks`` array of the ``.npz``)."""
    from ..distill.sources import load_rgb

    for key, path, gt_path in items:
        if gt_path is None and require_gt:
            raise FileNotFoundError(f"{key}: no ground-truth file")
        gt = None
        if gt_path is not None:
            with np.load(gt_path) as z:
                if "masks" not in z:
                    raise ValueError(f"{gt_path}: no 'masks' array (NxHxW bool)")
                gt = z["masks"].astype(bool)
        yield key, load_rgb(path), gt
