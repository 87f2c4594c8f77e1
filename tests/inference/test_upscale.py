"""The one-pass mask upscaling equals Sam.postprocess_masks up to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobilesam.inference.upscale import (
    axis_map,
    bilinear_matrix,
    column_bands,
    mask_map,
    upscale_torch,
)


def _reference(low: torch.Tensor, padded: int, inp: tuple, orig: tuple) -> torch.Tensor:
    x = F.interpolate(low, (padded, padded), mode="bilinear", align_corners=False)
    x = x[..., : inp[0], : inp[1]]
    return F.interpolate(x, orig, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("n_in, n_out", [(256, 1024), (684, 534), (768, 1200), (7, 3000), (300, 7)])
def test_bilinear_weights_are_torchs_own(n_in, n_out):
    eye = torch.eye(n_in).view(1, 1, n_in, n_in)
    theirs = F.interpolate(eye, (n_in, n_out), mode="bilinear", align_corners=False)[0, 0].T
    assert np.array_equal(theirs.numpy().astype(np.float64), bilinear_matrix(n_in, n_out))


@pytest.mark.parametrize(
    "inp, orig",
    [
        ((684, 1024), (534, 800)),  # a landscape photo, downscaled
        ((1024, 768), (1600, 1200)),  # portrait, upscaled
        ((1024, 1024), (300, 300)),
        ((13, 1024), (10, 800)),  # a thin strip
        ((1024, 1024), (1024, 1024)),
    ],
)
def test_matches_the_two_step_reference(inp, orig):
    g = torch.Generator().manual_seed(0)
    low = torch.randn(2, 3, 256, 256, generator=g) * 10
    want = _reference(low, 1024, inp, orig)
    m = mask_map(low.shape[-2:], 1024, inp, orig)
    got = upscale_torch(low, m)
    assert got.shape == want.shape == (2, 3, *orig)
    assert float((got - want).abs().max()) < 2e-5  # values up to ~50: float32 rounding
    assert int(((got > 0) != (want > 0)).sum()) <= 2


def test_sizes_are_checked_and_maps_cached():
    with pytest.raises(ValueError, match="valid length"):
        mask_map((256, 256), 1024, (0, 1024), (10, 10))
    with pytest.raises(ValueError, match="output length"):
        mask_map((256, 256), 1024, (1024, 1024), (0, 10))
    a = mask_map((256, 256), 1024, [684, 1024], (534, 800))  # lists are fine
    assert a is mask_map(torch.Size([256, 256]), 1024, (684, 1024), [534, 800])


@pytest.mark.parametrize(
    "sizes", [(256, 1024, 1024, 800), (256, 1024, 13, 3000), (64, 256, 200, 7)]
)
def test_column_bands_hold_every_weight_of_the_dense_map(sizes):
    dense = axis_map(*sizes).T  # low x out, the map the bands cut up
    bands = column_bands(*sizes, width=64)
    rebuilt = np.zeros_like(dense)
    for b in bands:
        rebuilt[b.lo : b.hi, b.start : b.stop] = b.block
    assert [b.start for b in bands] == list(range(0, sizes[-1], 64))
    assert bands[-1].stop == sizes[-1]
    np.testing.assert_allclose(rebuilt, dense.astype(np.float32), rtol=0, atol=0)
    assert max(b.hi - b.lo for b in bands) < sizes[0]  # banded, not the whole width
