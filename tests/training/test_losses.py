"""Focal, dice and IoU losses, and the best-of-multimask selection."""

from __future__ import annotations

import math

import torch

from mobilesam.inference.masks import mask_iou
from mobilesam.training.losses import dice_loss, sam_mask_loss, sigmoid_focal_loss


def test_focal_loss_matches_its_formula_on_one_pixel():
    logit, t = torch.tensor([[[0.7]]]), torch.tensor([[[1.0]]])
    p = 1 / (1 + math.exp(-0.7))
    expected = 0.25 * (1 - p) ** 2 * -math.log(p)
    assert math.isclose(float(sigmoid_focal_loss(logit, t)), expected, rel_tol=1e-5)
    t0 = torch.tensor([[[0.0]]])
    expected0 = 0.75 * p**2 * -math.log(1 - p)
    assert math.isclose(float(sigmoid_focal_loss(logit, t0)), expected0, rel_tol=1e-5)


def test_focal_exponent_zero_is_class_weighted_cross_entropy():
    logit, t = torch.tensor([[[0.7]]]), torch.tensor([[[1.0]]])
    p = 1 / (1 + math.exp(-0.7))
    got = float(sigmoid_focal_loss(logit, t, gamma=0.0))
    assert math.isclose(got, 0.25 * -math.log(p), rel_tol=1e-5)
    # and the training loss passes it on: a confident-enough pixel still pulls with gamma 0
    gt = torch.ones(1, 4, 4, dtype=torch.bool)
    logits = torch.full((1, 1, 4, 4), 1.5, requires_grad=True)
    iou = torch.ones(1, 1)
    grads = []
    for gamma in (2.0, 0.0):
        logits.grad = None
        sam_mask_loss(logits, iou, gt, focal_gamma=gamma)[0].backward()
        grads.append(float(logits.grad.abs().sum()))
    assert grads[1] > 2 * grads[0]


def test_focal_alpha_weighs_foreground_against_background():
    logits = torch.tensor([[[0.7, -0.3]]])
    target = torch.tensor([[[1.0, 0.0]]])
    fg, bg = (float(sigmoid_focal_loss(logits[..., i : i + 1], target[..., i : i + 1], alpha=-1))
              for i in (0, 1))  # fmt: skip
    for alpha in (0.25, 0.5, 0.9):
        got = float(sigmoid_focal_loss(logits, target, alpha=alpha))
        assert math.isclose(got, (alpha * fg + (1 - alpha) * bg) / 2, rel_tol=1e-5)
    # the training loss passes it on: more foreground weight, more pull on a foreground pixel
    gt = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt[0, :2] = True
    logits = torch.zeros((1, 1, 4, 4), requires_grad=True)
    pulls = []
    for alpha in (0.25, 0.5):
        logits.grad = None
        sam_mask_loss(logits, torch.ones(1, 1), gt, dice_weight=0.0, focal_alpha=alpha)[
            0
        ].backward()
        pulls.append(-float(logits.grad[0, 0, 0, 0]))
    assert pulls[0] > 0 and math.isclose(pulls[1], 2 * pulls[0], rel_tol=1e-6)


def test_dice_and_iou_at_the_extremes():
    gt = torch.zeros(1, 8, 8)
    gt[0, 2:6, 2:6] = 1
    perfect = (gt * 2 - 1) * 50
    assert float(dice_loss(perfect, gt)) < 1e-3
    assert float(dice_loss(-perfect, gt)) > 0.9
    assert float(mask_iou(perfect > 0, gt)) == 1.0
    half = torch.zeros(1, 8, 8, dtype=torch.bool)
    half[0, 2:6, 2:4] = True
    assert math.isclose(float(mask_iou(half, gt)), 0.5)
    assert float(mask_iou(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))) == 1.0


def test_only_the_best_multimask_output_gets_mask_gradient():
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[:, 1:5, 1:5] = True
    good = (gt.float() * 2 - 1) * 6
    logits = torch.stack([-good, good, torch.zeros_like(good)], dim=1).requires_grad_(True)
    iou_pred = torch.full((2, 3), 0.5, requires_grad=True)
    loss, parts, best = sam_mask_loss(logits, iou_pred, gt)
    assert best.tolist() == [1, 1]
    loss.backward()
    g = logits.grad.abs().flatten(2).sum(2)
    assert (g[:, 1] > 0).all() and (g[:, 0] == 0).all() and (g[:, 2] == 0).all()
    # the IoU head is trained on every output against its true IoU (1 for the good mask)
    assert (iou_pred.grad != 0).all()
    assert parts["iou"] > 0.99
