"""FastPointDecoder: prompt selection and grid regions of the mask upscaling."""

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
