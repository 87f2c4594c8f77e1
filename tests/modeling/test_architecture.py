"""Module names and shapes match the official checkpoints; forward shapes; TinyViT details."""

from __future__ import annotations

import json

import pytest
import torch

from mobilesam import build_model, count_parameters, get_config, list_models, parameter_table
from mobilesam.build import SamConfig, TinyViTConfig, build_sam, register_config

OFFICIAL = ("vit_t", "vit_b", "vit_l", "vit_h")


@pytest.mark.parametrize("name", OFFICIAL)
def test_state_dict_keys_and_shapes_match_official(name, shared_dir):
    spec = json.loads((shared_dir / "parity" / f"keys_{name}.json").read_text())["keys"]
    with torch.device("meta"):  # no memory, no init cost: only names and shapes matter
        model = build_sam(get_config(name))
    sd = model.state_dict()
    assert list(sd) == list(spec), "key order differs from the official state_dict"
    for key, v in spec.items():
        assert list(sd[key].shape) == v["shape"], key
        assert str(sd[key].dtype).replace("torch.", "") == v["dtype"], key


def test_registry_names_and_default_alias():
    names = list_models()
    for n in OFFICIAL + ("default",):
        assert n in names
    assert get_config("default") is get_config("vit_h")
    with pytest.raises(KeyError, match="unknown model 'nope'.*vit_t"):
        get_config("nope")


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_config(SamConfig("vit_t", TinyViTConfig()))


def test_parameter_counts_of_mobilesam():
    with torch.device("meta"):
        model = build_sam(get_config("vit_t"))
    table = parameter_table(model)
    # TinyViT's unused ImageNet head: LayerNorm(320) + Linear(320, 1000)
    assert table["image_encoder"] - table["image_encoder_forward"] == 2 * 320 + 320 * 1000 + 1000
    assert table["total"] == count_parameters(model)
    assert 5.5e6 < table["image_encoder_forward"] < 6.0e6  # the paper's ~5.78M
    assert 9.5e6 < table["total_forward"] < 10.0e6  # the paper's ~9.66M


@pytest.mark.parametrize("image_size", [256, 512])
def test_tinyvit_output_grid_follows_image_size(image_size):
    torch.manual_seed(0)
    model = build_model("vit_t", image_size=image_size)
    x = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        emb = model.image_encoder(x)
    assert emb.shape == (2, 256, image_size // 16, image_size // 16)
    assert model.prompt_encoder.get_dense_pe().shape == (1, 256, image_size // 16, image_size // 16)


def test_small_vit_encoder_forward():
    from mobilesam.build import ViTConfig

    cfg = SamConfig(
        "tiny_vit_test",
        ViTConfig(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,)),
        image_size=128,
    )
    model = build_sam(cfg)
    with torch.no_grad():
        emb = model.image_encoder(torch.randn(1, 3, 128, 128))
    assert emb.shape == (1, 256, 8, 8)


def test_attention_biases_loaded_after_eval_are_used(small_model):
    """The reference caches the bias at eval(); we must use freshly loaded values."""
    model = build_model("vit_t", image_size=256)
    model.load_state_dict(small_model.state_dict())
    model.eval()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model.image_encoder(x)
        sd = model.state_dict()
        for k in sd:
            if k.endswith("attention_biases"):
                sd[k] = torch.full_like(sd[k], 3.0) * torch.randn_like(sd[k])
        model.load_state_dict(sd)  # loaded after eval(), no further eval() call
        after = model.image_encoder(x)
    assert not torch.allclose(before, after)


def _stem_config(stem: str) -> SamConfig:
    from mobilesam.build import ViTConfig

    enc = ViTConfig(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,), stem=stem)
    return SamConfig(f"vit_{stem}_stem_test", enc, image_size=128, prompt_embed_dim=64)


def test_conv_stem_gives_the_patch_grid_and_travels_with_the_checkpoint(tmp_path):
    from mobilesam.checkpoint import save_checkpoint
    from mobilesam.loading import load_model
    from mobilesam.modeling.image_encoder import ConvStem, PatchEmbed

    x = torch.randn(2, 3, 128, 128)
    torch.manual_seed(0)
    conv = build_sam(_stem_config("conv")).eval()
    for bn in conv.modules():  # trained-looking statistics, so folding them changes numbers
        if isinstance(bn, torch.nn.BatchNorm2d):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n) * 0.3)
            bn.running_var.copy_(torch.rand(n) + 0.5)
            torch.nn.init.normal_(bn.weight, 1.0, 0.2)
            torch.nn.init.normal_(bn.bias, 0.0, 0.2)
    patch = build_sam(_stem_config("patch")).eval()
    assert isinstance(conv.image_encoder.patch_embed, ConvStem)
    assert isinstance(patch.image_encoder.patch_embed, PatchEmbed)
    with torch.no_grad():
        tokens = conv.image_encoder.patch_embed(x)
        assert tokens.shape == patch.image_encoder.patch_embed(x).shape == (2, 8, 8, 64)
        emb = conv.image_encoder(x)
    assert emb.shape == (2, 64, 8, 8)

    # the stem is part of the recorded config, so a checkpoint rebuilds the same network
    path = save_checkpoint(conv, tmp_path / "conv.safetensors", config=_stem_config("conv"))
    again = load_model(None, path)
    assert again.config.encoder.stem == "conv"
    with torch.no_grad():
        assert torch.equal(again.image_encoder(x), emb)

    # the optimised inference copy (BatchNorm folding, fused attention) computes the same
    from mobilesam.inference.optimize import optimize_model

    fast = optimize_model(again)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.image_encoder.modules())
    with torch.no_grad():
        torch.testing.assert_close(fast.image_encoder(x), emb, rtol=1e-4, atol=1e-4)


def test_configs_recorded_before_the_stem_setting_read_as_patch():
    cfg = _stem_config("conv")
    assert SamConfig.from_json(cfg.to_json()) == cfg
    old = json.loads(cfg.to_json())
    del old["encoder"]["stem"]
    assert SamConfig.from_json(json.dumps(old)).encoder.stem == "patch"


def test_bad_stems_are_clear_errors():
    from mobilesam.modeling.image_encoder import ConvStem

    with pytest.raises(ValueError, match="unknown stem 'pixel'.*conv"):
        build_sam(_stem_config("pixel"))
    with pytest.raises(ValueError, match="power-of-two patch size, got 12"):
        ConvStem(12, 3, 64)


def test_position_tables_resize_to_a_longer_token_grid():
    """A 64-px ViT's tables fit a 128-px one: the absolute embedding resized as an image,
    the global blocks' relative tables linearly, everything else untouched."""
    import torch.nn.functional as F

    from mobilesam.modeling.image_encoder import resize_position_tables
    from mobilesam.training.models import SHAPES_TEACHER as cfg

    torch.manual_seed(0)
    small = build_sam(cfg.replace(image_size=64))
    for p in small.parameters():
        torch.nn.init.normal_(p)
    big = build_sam(cfg.replace(image_size=128))
    state = resize_position_tables(small.state_dict(), big.state_dict())
    big.load_state_dict(state)  # strict: every shape fits
    src = small.state_dict()
    pe = src["image_encoder.pos_embed"]
    assert state["image_encoder.pos_embed"].shape == (1, 8, 8, pe.shape[-1])
    grid = F.interpolate(pe.permute(0, 3, 1, 2), size=(8, 8), mode="bicubic")
    assert torch.allclose(state["image_encoder.pos_embed"], grid.permute(0, 2, 3, 1))
    g = cfg.encoder.global_attn_indexes[0]
    key = f"image_encoder.blocks.{g}.attn.rel_pos_h"
    assert state[key].shape[0] == 2 * 8 - 1 and src[key].shape[0] == 2 * 4 - 1
    line = F.interpolate(src[key].T[None], size=15, mode="linear")[0].T
    assert torch.allclose(state[key], line)
    same = [k for k, v in src.items() if v.shape == state[k].shape]
    assert same and all(torch.equal(src[k], state[k]) for k in same)
