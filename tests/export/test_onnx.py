"""ONNX export: SAM's decoder signature, dynamic points, box corners, validation."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mobilesam import SamPredictor
from mobilesam.export import onnx as ex
from mobilesam.export.onnx import DECODER_INPUTS, DECODER_OUTPUTS, ExportValidationError


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def torch_pred(small_model):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    pred = SamPredictor(small_model)
    pred.set_image(image)
    return pred


def _feed(pred, coords, labels, mask=None):
    """SAM-ONNX decoder inputs; coords already in the resized input frame."""
    m = pred.model.prompt_encoder.mask_input_size[0]
    has = mask is not None
    return {
        "image_embeddings": pred.get_image_embedding().numpy(),
        "point_coords": np.asarray(coords, np.float32),
        "point_labels": np.asarray(labels, np.float32),
        "mask_input": (mask if has else np.zeros((1, 1, m, m))).astype(np.float32),
        "has_mask_input": np.array([1.0 if has else 0.0], np.float32),
        "orig_im_size": np.array(pred.original_size, np.float32),
    }


def _torch_all_tokens(pred, coords, labels, boxes=None, mask=None):
    """All four mask tokens from the library path: (full logits, iou, low-res)."""
    c = None if coords is None else torch.as_tensor(coords, dtype=torch.float)
    lab = None if labels is None else torch.as_tensor(labels, dtype=torch.int)
    b = None if boxes is None else torch.as_tensor(boxes, dtype=torch.float)
    mk = None if mask is None else torch.as_tensor(mask, dtype=torch.float)
    single = pred.predict_torch(c, lab, b, mk, multimask_output=False, return_logits=True)
    multi = pred.predict_torch(c, lab, b, mk, multimask_output=True, return_logits=True)
    return [torch.cat([s, m], dim=1).numpy() for s, m in zip(single, multi)]


def test_signature_and_metadata(small_onnx_dir):
    dec = _session(small_onnx_dir / "decoder.onnx")
    assert [i.name for i in dec.get_inputs()] == list(DECODER_INPUTS)
    assert [o.name for o in dec.get_outputs()] == list(DECODER_OUTPUTS)
    coords = dec.get_inputs()[1].shape
    assert isinstance(coords[0], str) and isinstance(coords[1], str) and coords[2] == 2
    enc = _session(small_onnx_dir / "encoder.onnx")
    assert enc.get_inputs()[0].shape == [1, 3, 256, 256]
    meta = enc.get_modelmeta().custom_metadata_map
    assert int(meta["mobilesam.image_size"]) == 256
    report = json.loads((small_onnx_dir / "export.json").read_text())
    assert [c["name"] for c in report["checks"]] == ["fp32", "int8"]
    assert all(c["passed"] for c in report["checks"])


@pytest.mark.parametrize("n_points", [1, 5])
def test_decoder_dynamic_points(small_onnx_dir, torch_pred, n_points):
    rng = np.random.default_rng(n_points)
    coords = rng.uniform(0, 190, (2, n_points, 2))  # two prompt sets: batch is dynamic too
    labels = rng.integers(0, 2, (2, n_points))
    dec = _session(small_onnx_dir / "decoder.onnx")
    # SAM's ONNX convention: the caller appends the padding point (0, 0) / -1.
    pad_c = np.concatenate([coords, np.zeros((2, 1, 2))], axis=1)
    pad_l = np.concatenate([labels, -np.ones((2, 1))], axis=1)
    masks, iou, low = dec.run(None, _feed(torch_pred, pad_c, pad_l))
    ref_masks, ref_iou, ref_low = _torch_all_tokens(torch_pred, coords, labels)
    assert masks.shape == (2, 4, 150, 200)
    np.testing.assert_allclose(low, ref_low, atol=1e-4, rtol=0)
    np.testing.assert_allclose(iou, ref_iou, atol=1e-5, rtol=0)
    np.testing.assert_allclose(masks, ref_masks, atol=2e-4, rtol=0)


def test_decoder_box_corners_and_mask_input(small_onnx_dir, torch_pred):
    box = np.array([[20.0, 30.0, 150.0, 120.0]])
    point = np.array([[[60.0, 70.0]]])
    mask = np.random.default_rng(3).normal(0, 3, (1, 1, 64, 64))
    dec = _session(small_onnx_dir / "decoder.onnx")
    # Points first, then the box as two corners labelled 2 and 3; no padding point.
    coords = np.concatenate([point, box.reshape(1, 2, 2)], axis=1)
    labels = np.array([[1, 2, 3]])
    masks, iou, low = dec.run(None, _feed(torch_pred, coords, labels, mask))
    ref_masks, ref_iou, ref_low = _torch_all_tokens(torch_pred, point, [[1]], box, mask)
    np.testing.assert_allclose(low, ref_low, atol=1e-4, rtol=0)
    np.testing.assert_allclose(iou, ref_iou, atol=1e-5, rtol=0)
    np.testing.assert_allclose(masks, ref_masks, atol=2e-4, rtol=0)
    # Box alone (labels 2, 3) matches a box-only torch prompt.
    _, iou_b, low_b = dec.run(None, _feed(torch_pred, box.reshape(1, 2, 2), [[2, 3]]))
    _, ref_iou_b, ref_low_b = _torch_all_tokens(torch_pred, None, None, box)
    np.testing.assert_allclose(low_b, ref_low_b, atol=1e-4, rtol=0)


def test_single_mask_decoder_selection(small_onnx_dir, torch_pred):
    dec = _session(small_onnx_dir / "decoder_single_mask.onnx")
    one = np.array([[[50.0, 60.0], [0.0, 0.0]]])
    masks, iou, low = dec.run(None, _feed(torch_pred, one, [[1, -1]]))
    assert masks.shape[:2] == (1, 1) and iou.shape == (1, 1)
    _, ref_iou, ref_low = _torch_all_tokens(torch_pred, one[:, :1], [[1]])
    best = 1 + int(np.argmax(ref_iou[0, 1:]))  # 2 points incl. padding: best multimask token
    np.testing.assert_allclose(low[0, 0], ref_low[0, best], atol=1e-4, rtol=0)
    three = np.array([[[50.0, 60.0], [100.0, 90.0], [0.0, 0.0]]])
    _, _, low3 = dec.run(None, _feed(torch_pred, three, [[1, 0, -1]]))
    _, _, ref_low3 = _torch_all_tokens(torch_pred, three[:, :2], [[1, 0]])
    np.testing.assert_allclose(low3[0, 0], ref_low3[0, 0], atol=1e-4, rtol=0)  # token 0


def test_int8_graphs_are_smaller_and_run(small_onnx_dir):
    for part in ("encoder", "decoder"):
        fp32 = (small_onnx_dir / f"{part}.onnx").stat().st_size
        int8 = (small_onnx_dir / f"{part}.int8.onnx").stat().st_size
        assert int8 < 0.6 * fp32


def test_validation_fails_loudly(small_model, small_onnx_dir, tmp_path, monkeypatch):
    broken = copy.deepcopy(small_model)
    with torch.no_grad():
        broken.mask_decoder.iou_prediction_head.layers[-1].bias.add_(0.5)
        broken.image_encoder.neck[3].bias.add_(1e-3)
    check = ex.check_graphs(
        broken, small_onnx_dir / "encoder.onnx", small_onnx_dir / "decoder.onnx"
    )
    assert not check.passed
    assert any("embedding" in p for p in check.problems)
    assert any("IoU predictions" in p for p in check.problems)

    # export_onnx raises when its own check fails (graphs copied from the good export).
    def fake_export(name):
        def export(model, path, *args, **kwargs):
            shutil.copy(small_onnx_dir / name, path)
            return path

        return export

    monkeypatch.setattr(ex, "export_encoder", fake_export("encoder.onnx"))
    monkeypatch.setattr(ex, "export_decoder", fake_export("decoder.onnx"))
    with pytest.raises(ExportValidationError, match="IoU predictions"):
        ex.export_onnx(broken, tmp_path)
    assert json.loads((tmp_path / "export.json").read_text())["checks"][0]["passed"] is False


def test_bad_quantize_option(small_model, tmp_path):
    with pytest.raises(ValueError, match="quantize"):
        ex.export_onnx(small_model, tmp_path, quantize="int4")


@pytest.mark.slow
def test_vit_t_export_within_parity_tolerances(vit_t_model, dog_image, tmp_path):
    """The full-size MobileSAM graphs agree with torch within the parity tolerances."""
    from mobilesam.runtime import OnnxPredictor

    ex.export_encoder(vit_t_model, tmp_path / "encoder.onnx")
    ex.export_decoder(vit_t_model, tmp_path / "decoder.onnx")
    onnx_pred = OnnxPredictor(tmp_path / "encoder.onnx", tmp_path / "decoder.onnx")
    torch_pred = SamPredictor(vit_t_model)
    onnx_pred.set_image(dog_image)
    torch_pred.set_image(dog_image)
    emb = np.abs(onnx_pred.get_image_embedding() - torch_pred.get_image_embedding().numpy())
    assert emb.max() <= 1.3e-5
    h, w = dog_image.shape[:2]
    prompts = [
        {"point_coords": [[w * 0.45, h * 0.5]], "point_labels": [1]},
        {
            "box": [w * 0.2, h * 0.1, w * 0.8, h * 0.9],
            "point_coords": [[w * 0.5, h * 0.5]],
            "point_labels": [0],
        },
    ]
    for prompt in prompts:
        for multimask in (True, False):
            mo, io, lo = onnx_pred.predict(**prompt, multimask_output=multimask)
            mt, it, lt = torch_pred.predict(**prompt, multimask_output=multimask)
            assert np.abs(lo - lt).max() <= 1.4e-4
            assert np.abs(io - it).max() <= 1e-5
            assert all((a != b).sum() <= max(16, 2e-5 * h * w) for a, b in zip(mo, mt))
