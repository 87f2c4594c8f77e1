"""Checkpoint loading: formats, strictness, clear errors, refusal of code-running pickles."""

from __future__ import annotations

import pickle

import pytest
import torch

from mobilesam import build_model, sam_model_registry
from mobilesam.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_config,
    read_state_dict,
    save_checkpoint,
)


class _Evil:
    """Unpickling this would create a file: the loader must refuse before that."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    bad = tmp_path / "evil.pt"
    torch.save({"image_encoder.x": _Evil(str(marker))}, bad)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused.*io.open.*Nothing was executed"):
        sam_model_registry["vit_t"](checkpoint=bad)
    assert not marker.exists()


def test_raw_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "pwned2.txt"
    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(CheckpointError, match="nothing was executed"):
        read_state_dict(bad)
    assert not marker.exists()


def test_truncated_checkpoint_gives_clear_error(tmp_path, small_model):
    good = tmp_path / "good.pt"
    torch.save(small_model.state_dict(), good)
    cut = tmp_path / "cut.pt"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a weights file"):
        read_state_dict(cut)


@pytest.mark.parametrize("content", [b"hello, not a checkpoint\n", b""])
def test_non_checkpoint_files(tmp_path, content):
    f = tmp_path / "notes.pt"
    f.write_bytes(content)
    with pytest.raises(CheckpointError):
        read_state_dict(f)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pt")


def test_corrupt_safetensors(tmp_path):
    f = tmp_path / "x.safetensors"
    f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="safetensors"):
        read_state_dict(f)


def test_not_a_state_dict(tmp_path):
    f = tmp_path / "list.pt"
    torch.save([1, 2, 3], f)
    with pytest.raises(CheckpointError, match="state dict"):
        read_state_dict(f)


def test_key_problems_are_listed_together(tmp_path, small_model):
    sd = dict(small_model.state_dict())
    sd.pop("mask_decoder.iou_token.weight")
    sd["image_encoder.extra.weight"] = torch.zeros(3)
    sd["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 7)
    f = tmp_path / "bad_keys.pt"
    torch.save(sd, f)
    model = build_model("vit_t", image_size=256)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, f)
    msg = str(info.value)
    assert "1 missing keys" in msg and "mask_decoder.iou_token.weight" in msg
    assert "1 unexpected keys" in msg and "image_encoder.extra.weight" in msg
    assert "1 shape mismatches" in msg and "(1, 7)" in msg


def test_wrapped_and_ddp_prefixed_state_dicts(tmp_path, small_model):
    sd = {f"module.{k}": v for k, v in small_model.state_dict().items()}
    f = tmp_path / "wrapped.pth"
    torch.save({"model": sd, "epoch": 3}, f)
    model = build_model("vit_t", image_size=256, checkpoint=f)
    for k, v in small_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_safetensors_round_trip_records_config(tmp_path, small_model):
    f = save_checkpoint(small_model, tmp_path / "m.safetensors")
    assert read_config(f) == small_model.config
    again = build_model(checkpoint=f)  # config read from the file: image_size 256
    assert again.image_size == 256
    for k, v in small_model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)
    with pytest.raises(ValueError, match="safetensors"):
        save_checkpoint(small_model, tmp_path / "m.pt")


def test_official_style_checkpoint_with_classifier_head_loads(generated_checkpoint):
    sd = torch.load(generated_checkpoint("vit_t"), weights_only=True)
    assert any(k.startswith("image_encoder.head.") for k in sd)
    model = sam_model_registry["vit_t"](checkpoint=generated_checkpoint("vit_t"))
    assert not model.training
    assert torch.equal(
        model.state_dict()["image_encoder.head.weight"], sd["image_encoder.head.weight"]
    )
