"""mobilesam.loading.load_model: every way to name a model, and one error type for failures."""

from __future__ import annotations

import pytest
import torch

from mobilesam.build import build_model
from mobilesam.checkpoint import save_checkpoint
from mobilesam.config import SamConfig, ViTConfig
from mobilesam.loading import ModelLoadError, load_model

TINY = SamConfig(
    "tiny_vit_for_loading",
    ViTConfig(embed_dim=32, depth=1, num_heads=2, global_attn_indexes=(0,), window_size=4),
    image_size=64,
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(3)
    return build_model(TINY)


@pytest.fixture(scope="module")
def tiny_files(tiny_model, tmp_path_factory):
    """The tiny model as a .safetensors that records its config, and as a bare .pt."""
    root = tmp_path_factory.mktemp("tiny")
    pt = root / "tiny.pt"
    torch.save(tiny_model.state_dict(), pt)
    return save_checkpoint(tiny_model, root / "tiny.safetensors"), pt


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_safetensors_file_is_built_from_its_recorded_config(tiny_model, tiny_files):
    st, _ = tiny_files
    for name in (None, "vit_t"):  # the recorded config wins over the name
        model = load_model(name, st)
        assert model.config == TINY and not model.training
        assert _same_weights(model, tiny_model)


def test_a_bare_state_dict_needs_the_name(tiny_model, tiny_files, monkeypatch):
    _, pt = tiny_files
    with pytest.raises(ModelLoadError, match="does not record its model config"):
        load_model(None, pt)
    monkeypatch.setattr("mobilesam.config._CONFIGS", {"tiny": TINY})
    model = load_model("tiny", pt)
    assert _same_weights(model, tiny_model) and not model.training


def test_random_weights_with_overrides(monkeypatch):
    monkeypatch.setattr("mobilesam.config._CONFIGS", {"tiny": TINY})
    torch.manual_seed(0)
    a = load_model("tiny", random_weights=True, image_size=32)
    torch.manual_seed(0)
    b = load_model("tiny", random_weights=True, image_size=32)
    assert a.image_size == 32 and a.config.image_size == 32 and not a.training
    assert _same_weights(a, b)  # the caller's seed decides the weights


def test_official_weights_come_from_the_cache(tmp_path, monkeypatch, small_model):
    monkeypatch.setenv("MOBILESAM_HOME", str(tmp_path))
    torch.save(small_model.state_dict(), tmp_path / "mobile_sam.pt")
    model = load_model("vit_t", image_size=256, download=False)
    assert _same_weights(model, small_model)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "vit_x"}, "unknown model 'vit_x'; registered: "),
        ({"name": None}, "a model name is needed"),
        ({"name": "vit_t", "checkpoint": "x.pt", "random_weights": True}, "not both"),
        ({"name": "vit_t", "random_weights": True, "image_sise": 64}, "image_sise"),
    ],
)
def test_bad_requests(kwargs, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(**kwargs)


def test_file_problems_are_model_load_errors(tmp_path, tiny_files):
    with pytest.raises(ModelLoadError, match="checkpoint not found: .*missing.pt"):
        load_model("vit_t", tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="garbage.pt: not a readable PyTorch checkpoint"):
        load_model("vit_t", garbage)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(tiny_files[0].read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="cut.safetensors"):
        load_model(None, truncated)
    # the tiny ViT's weights do not fit MobileSAM's TinyViT: every problem in one message
    with pytest.raises(ModelLoadError, match="tiny.pt: checkpoint does not fit") as info:
        load_model("vit_t", tiny_files[1])
    assert "missing keys" in str(info.value) and "unexpected keys" in str(info.value)


def test_offline_without_cached_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILESAM_HOME", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="mobile_sam.pt") as info:
        load_model("vit_t", download=False)
    assert "mobilesam weights download vit_t" in str(info.value)
    offline = {
        k: v.__class__(v.model, v.filename, (tmp_path / "unreachable.pt").as_uri(), 1)
        for k, v in __import__("mobilesam.hub").hub.OFFICIAL_WEIGHTS.items()
    }
    monkeypatch.setattr("mobilesam.hub.OFFICIAL_WEIGHTS", offline)
    with pytest.raises(ModelLoadError, match="could not download the vit_t weights"):
        load_model("vit_t")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_device_that_does_not_exist(tiny_files):
    with pytest.raises(ModelLoadError, match="cannot move the model to device 'nodevice'"):
        load_model(None, tiny_files[0], device="nodevice")


def test_half_precision_files_load_as_float32(tiny_model, tmp_path):
    from mobilesam.training.assets import save_fp16

    model = load_model(None, save_fp16(tiny_model, tmp_path / "half.safetensors"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ref = tiny_model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k].half().to(v.dtype)), k
