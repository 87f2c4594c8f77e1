"""FastPointDecoder: the same function as Sam.decode; prompt selection and grid regions."""

import pytest
import torch

from mobilesam.inference.fast_decoder import FastPointDecoder


@pytest.fixture(scope="module")
def decoded(small_model):
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(1, 256, 16, 16, generator=g)
    coords = torch.rand(6, 1, 2, generator=g) * 256
    labels = torch.ones(6, 1, dtype=torch.int)
    fd = FastPointDecoder(small_model)
    fd.set_embedding(feats)
    with torch.no_grad():
        tokens, state = fd.transformer(fd.prompt_embeddings(coords, labels), (1, 2, 3))
        full = fd.masks(tokens, state)
    return fd, tokens, state, full


def test_selected_prompts_in_small_chunks_equal_all_prompts(decoded):
    fd, tokens, state, full = decoded
    sel = torch.tensor([4, 1, 5])
    got = fd.masks(tokens, state, select=sel, chunk=2)
    torch.testing.assert_close(got, full[sel], rtol=1e-5, atol=1e-5)
    assert fd.masks(tokens, state, select=torch.tensor([], dtype=torch.long)).shape == (
        0,
        3,
        64,
        64,
    )


@pytest.mark.parametrize("region", [(9, 16), (16, 5), (3, 7)])
def test_region_computes_the_top_left_part_only(decoded, region):
    fd, tokens, state, full = decoded
    got = fd.masks(tokens, state, region=region)
    r, c = 4 * region[0], 4 * region[1]
    torch.testing.assert_close(got[:, :, :r, :c], full[:, :, :r, :c], rtol=1e-5, atol=1e-5)
    outside = torch.ones_like(got, dtype=torch.bool)
    outside[:, :, :r, :c] = False
    assert torch.isneginf(got[outside]).all()


def test_region_outside_the_grid_is_refused(decoded):
    fd, tokens, state, _ = decoded
    with pytest.raises(ValueError, match="region"):
        fd.masks(tokens, state, region=(17, 4))


def test_decoder_needs_an_embedding(small_model):
    fd = FastPointDecoder(small_model)
    with pytest.raises(RuntimeError, match="set_embedding"):
        fd.transformer(torch.zeros(1, 2, 256))


def _fast_vs_contract(model, feats, coords, labels, mask_ids):
    """Max |difference| of (low-res logits, IoU) between the fast decoder and Sam.decode."""
    fd = FastPointDecoder(model)
    fd.set_embedding(feats)
    with torch.no_grad():
        tokens, keys = fd.transformer(fd.prompt_embeddings(coords, labels), mask_ids)
        low = fd.masks(tokens, keys, mask_ids)
        iou = fd.iou(tokens, multimask=mask_ids != (0,))
        _, ref_iou, ref_low = model.decode(
            feats, points=(coords, labels), multimask_output=mask_ids != (0,)
        )
    return float((low - ref_low).abs().max()), float((iou - ref_iou).abs().max())


@pytest.mark.parametrize("mask_ids", [(1, 2, 3), (0,)], ids=["multimask", "single"])
@pytest.mark.parametrize("n", [1, 5])
def test_fast_decoder_implements_the_decode_contract(small_model, n, mask_ids):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 256, 16, 16, generator=g)
    coords = torch.rand(n, 2, 2, generator=g, dtype=torch.float64) * 256
    labels = torch.tensor([[1, 0]] * n, dtype=torch.int)
    d_low, d_iou = _fast_vs_contract(small_model, feats, coords, labels, mask_ids)
    assert d_low < 1e-4 and d_iou < 1e-5
