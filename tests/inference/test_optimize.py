"""Torch-path optimisations stay within the parity tolerances of the exact path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mobilesam import SamPredictor, build_model
from mobilesam.inference.fast_predictor import FastPredictor
from mobilesam.inference.fold import fold_conv_bn
from mobilesam.inference.fused_attention import FusedDecoderAttention, FusedTinyViTAttention
from mobilesam.inference.optimize import OptimizeConfig, optimize_model
from mobilesam.modeling import tiny_vit as tv
from mobilesam.modeling import transformer as tr


def test_fold_conv_bn_matches_conv_then_bn():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=4, bias=False)
    bn = nn.BatchNorm2d(12)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(2, 8, 15, 17)
    fused = fold_conv_bn(conv, bn)
    torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_every_batchnorm_of_tinyvit_is_folded_once():
    from mobilesam.inference.fold import fold_batchnorm

    with torch.device("meta"):
        encoder = build_model("vit_t", image_size=256).image_encoder
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in encoder.modules())
    assert norms > 0 and fold_batchnorm(encoder) == norms
    assert not any(isinstance(m, nn.BatchNorm2d) for m in encoder.modules())


def test_original_model_is_left_alone(small_model):
    fast = optimize_model(small_model)
    assert any(isinstance(m, tv.Conv2dBN) for m in small_model.modules())
    assert not any(isinstance(m, tv.Conv2dBN) for m in fast.modules())
    assert all(
        type(m) is tr.Attention for m in small_model.modules() if isinstance(m, tr.Attention)
    )
    assert all(p.requires_grad for p in small_model.parameters())
    assert any(isinstance(m, FusedDecoderAttention) for m in fast.modules())
    assert any(isinstance(m, FusedTinyViTAttention) for m in fast.modules())
    # The wrappers share the original weights of the copy (no second copy of them).
    wrapped = next(m for m in fast.modules() if isinstance(m, FusedDecoderAttention))
    assert wrapped.attn.q_proj.weight.data_ptr() in {p.data_ptr() for p in fast.parameters()}


@pytest.fixture(scope="module")
def exact_dog(vit_t_model, dog_image):
    exact = SamPredictor(vit_t_model)
    exact.set_image(dog_image)
    return exact


@pytest.mark.parametrize(
    "config", [OptimizeConfig(), OptimizeConfig(channels_last=True)], ids=["default", "chlast"]
)
def test_vit_t_optimised_within_parity_tolerances(vit_t_model, dog_image, exact_dog, config):
    exact = exact_dog
    fast = SamPredictor(optimize_model(vit_t_model, config))
    fast.set_image(dog_image)
    diff = (exact.get_image_embedding() - fast.get_image_embedding()).abs().max().item()
    assert diff <= 1.3e-5
    h, w = dog_image.shape[:2]
    prompt = {"point_coords": [[w * 0.4, h * 0.5], [w * 0.8, h * 0.3]], "point_labels": [1, 0]}
    me, se, le = exact.predict(**prompt)
    mf, sf, lf = fast.predict(**prompt)
    np.testing.assert_allclose(lf, le, atol=1.4e-4, rtol=0)
    np.testing.assert_allclose(sf, se, atol=1e-5, rtol=0)
    assert all((a != b).sum() <= 16 for a, b in zip(me, mf))


def test_fast_predictor_decoder_within_tolerances(vit_t_model, dog_image, exact_dog):
    """Prompts without a mask input take the shared-embedding decoder; with one, the usual."""
    fast = FastPredictor(vit_t_model)
    fast.set_image(dog_image)
    h, w = dog_image.shape[:2]
    box = [w * 0.2, h * 0.1, w * 0.8, h * 0.9]
    prompts = [
        {"point_coords": [[w * 0.45, h * 0.5]], "point_labels": [1]},
        {"box": box},
        {"box": box, "point_coords": [[w * 0.5, h * 0.5]], "point_labels": [0]},
    ]
    for prompt in prompts:
        for multimask in (True, False):
            me, se, le = exact_dog.predict(**prompt, multimask_output=multimask)
            mf, sf, lf = fast.predict(**prompt, multimask_output=multimask)
            np.testing.assert_allclose(lf, le, atol=1.4e-4, rtol=0)
            np.testing.assert_allclose(sf, se, atol=1e-5, rtol=0)
            assert all((a != b).sum() <= 16 for a, b in zip(me, mf))
    previous = le[:1]
    _, se, le = exact_dog.predict(**prompts[0], mask_input=previous)
    _, sf, lf = fast.predict(**prompts[0], mask_input=previous)
    np.testing.assert_allclose(lf, le, atol=1.4e-4, rtol=0)
    grid = torch.tensor([[[x * w, y * h]] for x in (0.2, 0.5, 0.8) for y in (0.3, 0.7)])
    ct = fast.transform.apply_coords_torch(grid, (h, w))
    lt = torch.ones(6, 1, dtype=torch.int)
    with torch.no_grad():
        ref = exact_dog.predict_torch(ct, lt)
        got = fast.predict_torch(ct, lt)
    torch.testing.assert_close(got[2], ref[2], atol=1.4e-4, rtol=0)
    torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=0)


def test_fast_predictor_cache(small_model):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] ^= 1  # one bit differs: a different image
    fast = FastPredictor(small_model, cache_size=2)
    exact = SamPredictor(small_model)
    fast.set_image(a)
    emb_a = fast.get_image_embedding()
    fast.set_image(b)
    fast.set_image(np.ascontiguousarray(a[..., ::-1]), image_format="BGR")  # same pixels
    assert (fast.cache.hits, fast.cache.misses) == (1, 2)
    assert fast.get_image_embedding() is emb_a and fast.original_size == (100, 140)
    exact.set_image(a)
    np.testing.assert_allclose(
        fast.predict(box=[10, 10, 90, 80])[2], exact.predict(box=[10, 10, 90, 80])[2], atol=1e-4
    )


def test_fast_predictor_decodes_in_float32_under_autocast(small_model):
    # The shared-embedding decoder's buffers are float32: a caller's autocast must not reach
    # them (it used to fail with "expected scalar type Float but found BFloat16").
    img = np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    fast = FastPredictor(small_model)
    fast.set_image(img)
    point = dict(point_coords=[[40, 30]], point_labels=[1], return_logits=True)
    plain = fast.predict(**point)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = fast.predict(**point)
        fast.set_image(img[:, ::-1].copy())  # an encoder under autocast: bf16 features
        other = fast.predict(**point)
    for a, b in zip(plain, under):
        np.testing.assert_array_equal(a, b)
    assert other[2].dtype == np.float32 and np.isfinite(other[2]).all()
