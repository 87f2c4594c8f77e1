"""How well masks at the decoder's low-res grid can describe shapes-world objects at all.

Each held-out ground-truth mask is averaged down to a GxG grid, turned into logits, upsampled
the way SAM's post-processing does (bilinear, half-pixel centres) and thresholded at 0: the IoU
with the original mask is what a model with perfect low-res logits could reach. Prints the
mean IoU per grid size and shape kind:

    .venv/bin/python scripts/shapes_resolution_bound.py --scenes 100 --grids 64 128
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np


def bound(scenes: int, grids: list[int], start: int = 0) -> dict[int, dict[str, float]]:
    """Mean IoU per grid size, per shape kind and over all objects (key ``all``)."""
    import torch
    import torch.nn.functional as F

    from mobilesam.data.shapes import render_scene, split_seeds
    from mobilesam.inference.masks import mask_iou

    ious: dict[int, dict[str, list[float]]] = {g: defaultdict(list) for g in grids}
    for seed in split_seeds("heldout", scenes, start=start):
        scene = render_scene(seed)
        if not len(scene):
            continue
        gt = torch.from_numpy(scene.masks)[:, None]
        size = gt.shape[-1]
        for g in grids:
            share = F.adaptive_avg_pool2d(gt.float(), g)
            logits = F.interpolate(share - 0.5, size=size, mode="bilinear", align_corners=False)
            for kind, iou in zip(scene.kinds, mask_iou(logits > 0, gt)[:, 0].tolist()):
                ious[g][kind].append(iou)
                ious[g]["all"].append(iou)
    return {g: {k: float(np.mean(v)) for k, v in sorted(d.items())} for g, d in ious.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, default=100)
    p.add_argument("--start", type=int, default=0, help="first held-out seed (offset)")
    p.add_argument("--grids", type=int, nargs="+", default=[64, 128])
    args = p.parse_args(argv)
    for g, by_kind in bound(args.scenes, args.grids, args.start).items():
        print(f"{g}x{g}: " + ", ".join(f"{k} {v:.3f}" for k, v in by_kind.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
