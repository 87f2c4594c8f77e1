"""SAM's training losses: focal + dice on mask logits, MSE on the IoU prediction.

Logits and targets are NxMxHxW (M candidate masks per prompt set) or NxHxW; every
function returns one value per mask (NxM or N), so the caller can pick the best of the
multimask outputs before averaging (SAM back-propagates only the lowest-loss mask).
The IoU target is :func:`mobilesam.inference.masks.mask_iou` of the thresholded logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..inference.masks import mask_iou


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al.) averaged over the pixels of each mask -> shape[:-2]."""
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of sigmoid(logits) against targets, per mask -> shape[:-2]."""
    p = torch.sigmoid(logits).flatten(-2)
    t = targets.to(logits.dtype).flatten(-2)
    num = 2 * (p * t).sum(-1) + eps
    den = p.sum(-1) + t.sum(-1) + eps
    return 1 - num / den


def sam_mask_loss(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    gt: torch.Tensor,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    iou_weight: float = 1.0,
    focal_gamma: float = 2.0,
    focal_alpha: float = 0.25,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Loss of NxMxHxW ``logits`` with Nx M ``iou_pred`` against NxHxW ``gt``.

    Per prompt set the mask with the lowest focal + dice loss is the one trained
    (M = 1 makes this plain SAM loss). The IoU head is trained on every output with the
    actual IoU of its thresholded mask (no gradient into the masks). ``focal_gamma`` 0
    makes the focal term a class-weighted cross-entropy; ``focal_alpha`` is the foreground
    pixels' weight (background: 1 - alpha; 0.25 as in Lin et al.; negative: no weighting).
    Returns the mean total loss, its parts (detached means) and the chosen mask index per
    prompt set (N).
    """
    target = gt[:, None].expand_as(logits)
    focal = sigmoid_focal_loss(logits, target, alpha=focal_alpha, gamma=focal_gamma)
    dice = dice_loss(logits, target)
    per_mask = focal_weight * focal + dice_weight * dice
    best = per_mask.argmin(dim=1)
    rows = torch.arange(logits.shape[0])
    with torch.no_grad():
        true_iou = mask_iou(logits > 0, target)
    iou_loss = F.mse_loss(iou_pred, true_iou, reduction="none").mean(1)
    total = per_mask[rows, best] + iou_weight * iou_loss
    parts = {
        "focal": focal[rows, best].mean().detach(),
        "dice": dice[rows, best].mean().detach(),
        "iou_mse": iou_loss.mean().detach(),
        "iou": true_iou[rows, best].mean(),
    }
    return total.mean(), parts, best
