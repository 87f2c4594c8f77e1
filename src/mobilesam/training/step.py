"""One training step of SAM's interactive recipe: prompts sampled from ground truth, losses.

:func:`step_loss` runs the encoder once per scene and the decoder on every sampled
object's simulated session (:func:`interactive_loss`): a jittered box or one point, then
correction clicks in the error region with the previous low-res mask fed back. The loop
around it (optimizer, schedule, checkpoints) is :mod:`.trainer`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.shapes import Scene
from ..modeling import Sam
from .config import SamTrainConfig
from .losses import sam_mask_loss
from .prompts import correction_points, jittered_boxes, sample_points


def scenes_to_batch(model: Sam, scenes: list[Scene]) -> torch.Tensor:
    """Scenes (rendered at the model's input size) -> Bx3xSxS normalised input."""
    s = model.image_size
    for sc in scenes:
        if sc.image.shape[:2] != (s, s):
            raise ValueError(f"scene {sc.seed} is {sc.image.shape[:2]}, the model takes {s}x{s}")
    x = torch.from_numpy(np.stack([sc.image for sc in scenes])).permute(0, 3, 1, 2).float()
    return model.preprocess(x.to(model.device))


def decode(
    model: Sam,
    embeddings: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    multimask: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nx(3|1)x4Gx4G low-res logits and Nx(3|1) IoU predictions for N prompt sets.

    ``embeddings`` is NxCxGxG (one row per prompt set). :meth:`Sam.decode` with
    gradients, no post-processing (the losses work on low-res logits).
    """
    _, iou, low = model.decode(
        embeddings, points=points, boxes=boxes, mask_input=mask_input, multimask_output=multimask
    )
    return low, iou


def interactive_loss(
    model: Sam,
    embeddings: torch.Tensor,
    gt: torch.Tensor,
    use_box: bool,
    cfg: SamTrainConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SAM's simulated interactive session for one group of prompt sets.

    ``embeddings`` NxCxGxG, ``gt`` NxSxS bool (input frame). Round 0 is a jittered box
    (single output) or one point (best of three outputs); every further round adds a
    correction click and the previous low-res logits, single output.
    """
    s = model.image_size
    dev = embeddings.device
    gt_cpu = gt.cpu()
    if use_box:
        boxes = jittered_boxes(gt_cpu, gen, max_jitter=cfg.max_box_jitter).to(dev)
        pts: tuple[torch.Tensor, torch.Tensor] | None = None
    else:
        boxes = None
        c, lab = sample_points(gt_cpu, gen)
        pts = (c.to(dev), lab.to(dev))
    mask_input = None
    total = torch.zeros((), device=dev)
    parts: dict[str, float] = {}
    rows = torch.arange(gt.shape[0], device=dev)
    for r in range(1 + cfg.correction_rounds):
        multimask = r == 0 and not use_box
        low, iou = decode(model, embeddings, pts, boxes, mask_input, multimask)
        up = F.interpolate(low, (s, s), mode="bilinear", align_corners=False)
        loss, p, best = sam_mask_loss(
            up, iou, gt, cfg.focal_weight, cfg.dice_weight, cfg.iou_weight,
            focal_gamma=cfg.focal_gamma, focal_alpha=cfg.focal_alpha,
        )  # fmt: skip
        total = total + loss
        if r == 0:
            parts = {k: float(v) for k, v in p.items()}
        if r < cfg.correction_rounds:
            chosen = up[rows, best].detach()
            c, lab = correction_points((chosen > 0).cpu(), gt_cpu, gen)
            c, lab = c.to(dev), lab.to(dev)
            pts = (
                (c, lab)
                if pts is None
                else (torch.cat([pts[0], c], 1), torch.cat([pts[1], lab], 1))
            )
            mask_input = low[rows, best][:, None].detach()
    return total / (1 + cfg.correction_rounds), parts


def sample_objects(
    scenes: list[Scene], per_image: int, rng: np.random.Generator
) -> tuple[list[int], list[np.ndarray]]:
    """Pick ``per_image`` instances per scene (with replacement when a scene has fewer)."""
    image_idx, masks = [], []
    for i, sc in enumerate(scenes):
        n = len(sc)
        if n == 0:
            continue
        picks = rng.choice(n, size=per_image, replace=n < per_image)
        for j in picks:
            image_idx.append(i)
            masks.append(sc.masks[j])
    return image_idx, masks


def step_loss(
    model: Sam,
    scenes: list[Scene],
    cfg: SamTrainConfig,
    rng: np.random.Generator,
    gen: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch of scenes (encoder forward once per image, decoder per prompt set)."""
    x = scenes_to_batch(model, scenes)
    emb = model.image_encoder(x)
    image_idx, masks = sample_objects(scenes, cfg.prompts_per_image, rng)
    if not masks:
        return emb.sum() * 0.0, {}
    dev = emb.device
    idx = torch.tensor(image_idx, device=dev)
    gt = torch.from_numpy(np.stack(masks)).to(dev)
    is_box = torch.from_numpy(rng.random(len(masks)) < cfg.box_fraction).to(dev)
    total = torch.zeros((), device=dev)
    logs: dict[str, float] = {}
    for use_box in (False, True):
        sel = (is_box == use_box).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        loss, parts = interactive_loss(model, emb[idx[sel]], gt[sel], use_box, cfg, gen)
        w = sel.numel() / len(masks)
        total = total + w * loss
        for k, v in parts.items():
            logs[k] = logs.get(k, 0.0) + w * v
    return total, logs
