"""Full-size mask logits computed only where needed, for the fast mask generator.

``Sam.postprocess_masks`` resizes 256x256 low-res logits twice with bilinear
interpolation (to the padded input, crop, to the original size). Per axis that
is one fixed linear map with at most a few consecutive nonzero taps per output
pixel, every row being a convex combination of low-res values. This module

* applies that map in blocks of output pixels (banded matmuls), to any window;
* finds the window outside which every logit is below a level (a pixel can only
  exceed a level if one of its low-res taps does);
* bounds the stability score from the low-res logits alone (max / min over each
  pixel's taps), so most candidates are rejected without any full-size work;
* encodes a window mask as an uncompressed RLE of the whole image.

Arrays are numpy float32 / bool. Frames: low-res (256x256), output (the crop's
original size HxW).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .upscale import axis_map

__all__ = ["AxisResize", "MaskResizer", "window_rle"]

# Low-res logits within this margin of a level count as reaching it, so float rounding
# of the interpolation weights can never move a pixel across a bound.
_MARGIN = 1e-3


class AxisResize:
    """One axis of the post-processing resize, as banded blocks of a matrix."""

    def __init__(self, low_len: int, padded_len: int, input_len: int, out_len: int) -> None:
        m = axis_map(low_len, padded_len, input_len, out_len)  # out_len x low_len
        nz = m != 0
        self.lo = nz.argmax(axis=1)  # first / last low-res tap of each output pixel
        self.hi = low_len - 1 - nz[:, ::-1].argmax(axis=1)
        self.out_len = out_len
        self.block = 96
        self.blocks = []
        for s in range(0, out_len, self.block):
            e = min(s + self.block, out_len)
            a, b = int(self.lo[s:e].min()), int(self.hi[s:e].max()) + 1
            self.blocks.append((s, e, a, b, np.ascontiguousarray(m[s:e, a:b], dtype=np.float32)))
        # Tap classes for the bounds: output pixels with the same (lo, hi) taps.
        pairs, self.class_count = np.unique(
            np.stack([self.lo, self.hi], axis=1), axis=0, return_counts=True
        )
        self.class_lo, self.class_len = pairs[:, 0], pairs[:, 1] - pairs[:, 0] + 1

    def window(self, first: int, last: int) -> tuple[int, int]:
        """Output block range [b0, b1) covering every pixel with a tap in [first, last]."""
        y0 = int(np.searchsorted(self.hi, first, side="left"))
        y1 = int(np.searchsorted(self.lo, last, side="right")) - 1
        if y0 > y1:
            return 0, 0
        return y0 // self.block, y1 // self.block + 1

    def span(self, b0: int, b1: int) -> tuple[int, int]:
        """Low-res index range [a, b) used by output blocks [b0, b1)."""
        return self.blocks[b0][2], max(blk[3] for blk in self.blocks[b0:b1])

    def pool(self, x: torch.Tensor, op: Any) -> torch.Tensor:
        """Max or min of x over each tap class along axis 0 -> axis 0 becomes classes.

        Axis 0 so that every gather copies whole contiguous slabs.
        """
        lo = torch.from_numpy(self.class_lo)
        last = torch.from_numpy(self.class_lo + self.class_len - 1)
        out = x.index_select(0, lo)
        for k in range(1, int(self.class_len.max())):
            out = op(out, x.index_select(0, torch.minimum(lo + k, last)))
        return out


class MaskResizer:
    """Both axes for one crop: window logits and stability bounds of low-res masks."""

    def __init__(self, low_hw: tuple[int, int], padded: int, input_hw: tuple[int, int],
                 out_hw: tuple[int, int]) -> None:  # fmt: skip
        self.rows = AxisResize(low_hw[0], padded, input_hw[0], out_hw[0])
        self.cols = AxisResize(low_hw[1], padded, input_hw[1], out_hw[1])

    def used_extent(self) -> tuple[int, int]:
        """Low-res rows and columns read at all: the rest maps to the cropped padding."""
        return int(self.rows.hi.max()) + 1, int(self.cols.hi.max()) + 1

    @staticmethod
    def extents(low: np.ndarray | torch.Tensor, level: float) -> np.ndarray:
        """Mx4 (first row, last row, first col, last col) of low-res pixels that reach
        ``level``; rows of -1 for masks with none. Batched, for ``window_logits``."""
        above = torch.as_tensor(low) > level - _MARGIN
        out = np.full((above.shape[0], 4), -1, dtype=np.int64)
        for k, axis in ((0, 2), (2, 1)):
            hit = above.any(axis)  # M x length
            some = hit.any(1).numpy()
            hit = hit.to(torch.uint8)
            first = hit.argmax(1).numpy()
            last = hit.shape[1] - 1 - hit.flip(1).argmax(1).numpy()
            out[some, k] = first[some]
            out[some, k + 1] = last[some]
        return out

    def window_logits(
        self, low: np.ndarray, level: float, extent: np.ndarray | None = None
    ) -> tuple[int, int, np.ndarray] | None:
        """Full-size logits of a 256x256 mask on the block window where any can exceed level.

        ``extent``: this mask's row of :meth:`extents` for ``level``, if already known.
        Returns (y0, x0, logits hxw float32) or None when no pixel can exceed ``level``.
        """
        if extent is None:
            extent = self.extents(low[None], level)[0]
        y_first, y_last, x_first, x_last = (int(v) for v in extent)
        if y_first < 0:
            return None
        rb0, rb1 = self.rows.window(y_first, y_last)
        cb0, cb1 = self.cols.window(x_first, x_last)
        if rb0 >= rb1 or cb0 >= cb1:
            return None
        c_lo, c_hi = self.cols.span(cb0, cb1)
        rblocks, cblocks = self.rows.blocks[rb0:rb1], self.cols.blocks[cb0:cb1]
        y0, x0 = rblocks[0][0], cblocks[0][0]
        tmp = np.empty((rblocks[-1][1] - y0, c_hi - c_lo), dtype=np.float32)
        for s, e, a, b, m in rblocks:
            np.matmul(m, low[a:b, c_lo:c_hi], out=tmp[s - y0 : e - y0])
        out = np.empty((len(tmp), cblocks[-1][1] - x0), dtype=np.float32)
        for s, e, a, b, m in cblocks:
            np.matmul(tmp[:, a - c_lo : b - c_lo], m.T, out=out[:, s - x0 : e - x0])
        return y0, x0, out

    def stability_upper_bound(
        self, low: np.ndarray | torch.Tensor, threshold: float, offset: float
    ) -> np.ndarray:
        """Upper bound of the full-size stability score of each Mx256x256 low-res mask.

        A full-size pixel can exceed ``threshold + offset`` only if one of its low-res
        taps does (intersection bounded above), and exceeds ``threshold - offset`` if
        all of its taps do (union bounded below). Both are pooled over tap classes
        as booleans, rows then columns, and counted with the class sizes.
        """
        rows, cols = self.used_extent()
        by_row = torch.as_tensor(low)[:, :rows, :cols].permute(1, 2, 0)  # rows x cols x M
        some = (by_row > threshold + offset - _MARGIN).contiguous()
        every = (by_row > threshold - offset + _MARGIN).contiguous()

        def pooled(b: torch.Tensor, op: Any) -> torch.Tensor:  # -> col classes x row classes x M
            return self.cols.pool(self.rows.pool(b, op).transpose(0, 1).contiguous(), op)

        inter_up = self._count(pooled(some, torch.logical_or))
        union_lo = self._count(pooled(every, torch.logical_and))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union_lo > 0, inter_up / np.maximum(union_lo, 1), np.inf)

    def _count(self, b: torch.Tensor) -> np.ndarray:
        """Full-size pixels per mask of a (col classes x row classes x M) boolean array."""
        nx = torch.from_numpy(self.cols.class_count.astype(np.float32))
        # per row class: at most the output width, exact in float32
        per_row = (nx @ b.reshape(len(nx), -1).to(torch.float32)).reshape(b.shape[1:])
        ny = torch.from_numpy(self.rows.class_count.astype(np.float64))
        return (ny @ per_row.double()).numpy()


def window_rle(mask: np.ndarray | None, y0: int, x0: int, size: tuple[int, int]) -> dict:
    """Uncompressed RLE (column-major, background first) of an HxW image that is
    False everywhere except the window ``mask`` placed at (y0, x0)."""
    h, w = size
    total = h * w
    if mask is None or not mask.any():
        return {"size": [h, w], "counts": [total]}
    wh, ww = mask.shape
    padded = np.zeros((ww, wh + 2), dtype=np.int8)
    padded[:, 1:-1] = mask.T
    d = np.diff(padded, axis=1)  # +1 run start, -1 run end (exclusive), per column
    col_s, pos_s = np.nonzero(d == 1)
    col_e, pos_e = np.nonzero(d == -1)
    starts = (x0 + col_s) * h + y0 + pos_s
    ends = (x0 + col_e) * h + y0 + pos_e
    # A run ending at the bottom of a column continues at the top of the next one.
    join = ends[:-1] == starts[1:]
    if join.any():
        starts = np.concatenate([starts[:1], starts[1:][~join]])
        ends = np.concatenate([ends[:-1][~join], ends[-1:]])
    bounds = np.empty(2 * len(starts) + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, total
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    counts = np.diff(bounds).tolist()
    if counts[-1] == 0:  # the last run reaches the final pixel: no trailing background run
        counts.pop()
    return {"size": [h, w], "counts": counts}
