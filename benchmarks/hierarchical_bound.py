"""How fast hierarchical sampling could be on shapes world, whatever the model.

    python benchmarks/hierarchical_bound.py [--scenes 100] [--points-per-side 32]

Hierarchical sampling skips a dense grid point only where a confident mask of the
sparse pass already covers it. On a scene, even a perfect model can at most cover
its objects, so the prompts per crop are at least

    (side / factor)^2 sparse points + the dense points outside every object

and the speed-up over the grid (decoder-bound, as in the fast path) is at most
``side^2`` over that. This prints, for held-out scenes, the share of pixels and of
grid points inside an object and that bound (per scene: mean and max; pooled over
scenes), with the sparse factor of :class:`~mobilesam.inference.AmgOptions`.
It needs no model: it reads the ground truth only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def grid_points_inside(union: np.ndarray, side: int) -> np.ndarray:
    """Which of the side x side grid points (SAM's cell centres) fall inside ``union``."""
    h, w = union.shape
    centres = (np.arange(side) + 0.5) / side
    rows = np.minimum((centres * h).astype(int), h - 1)
    cols = np.minimum((centres * w).astype(int), w - 1)
    return union[np.ix_(rows, cols)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=100, help="held-out scenes")
    ap.add_argument("--points-per-side", type=int, default=None, help="default: AmgOptions'")
    a = ap.parse_args()

    from mobilesam.data.shapes import iter_scenes
    from mobilesam.inference.amg_options import AmgOptions

    opts = AmgOptions()
    side = a.points_per_side or opts.points_per_side
    sparse = (side // opts.sparse_downscale_factor) ** 2
    pixels, inside = [], []
    for scene in iter_scenes("heldout", a.scenes):
        union = np.asarray(scene.masks, dtype=bool).any(0)
        pixels.append(union.mean())
        inside.append(grid_points_inside(union, side).sum())
    pixels_a, inside_a = np.array(pixels), np.array(inside)
    dense = side * side
    bound = dense / (sparse + dense - inside_a)
    pooled = dense * len(inside_a) / (sparse * len(inside_a) + (dense - inside_a).sum())
    print(f"{len(pixels_a)} held-out scenes, {side}x{side} grid, sparse pass {sparse} points")
    print(f"pixels inside an object: mean {pixels_a.mean():.3f}, max {pixels_a.max():.3f}")
    print(f"grid points inside an object: mean {inside_a.mean() / dense:.3f}, "
          f"max {inside_a.max() / dense:.3f}")  # fmt: skip
    print(f"hierarchical speed-up bound: mean {bound.mean():.2f}x, max {bound.max():.2f}x, "
          f"pooled {pooled:.2f}x")  # fmt: skip
    need = 1 - (dense / 3 - sparse) / dense
    print(f"3x needs confident masks over >= {need:.0%} of the grid points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
