"""The numpy decoder: the same function as Sam.decode, from one weights file, without torch."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilesam.export.numpy_weights import save_decoder_weights
from mobilesam.inference.core import DecodeRequest
from mobilesam.runtime.numpy_decoder import NumpyDecoder
from mobilesam.runtime.numpy_layers import gelu

SRC = Path(__file__).resolve().parents[2] / "src"
INPUT, ORIGINAL = (171, 256), (135, 202)  # resized input inside the 256 square, photo size


@pytest.fixture(scope="module")
def weights_file(small_model, tmp_path_factory) -> Path:
    return save_decoder_weights(small_model, tmp_path_factory.mktemp("nd") / "decoder.safetensors")


@pytest.fixture(scope="module")
def embedding(small_model) -> torch.Tensor:
    g = small_model.prompt_encoder.image_embedding_size[0]
    return torch.randn(1, 256, g, g, generator=torch.Generator().manual_seed(3)) * 0.5


def _torch(model, emb, coords, labels, boxes, mask, multimask):
    points = None
    if coords is not None:
        points = (torch.as_tensor(coords, dtype=torch.float32), torch.as_tensor(labels))
    with torch.inference_mode():
        masks, iou, low = model.decode(
            emb,
            points=points,
            boxes=None if boxes is None else torch.as_tensor(boxes, dtype=torch.float32),
            mask_input=None if mask is None else torch.as_tensor(mask),
            multimask_output=multimask,
            input_size=INPUT,
            original_size=ORIGINAL,
            return_logits=True,
        )
    return masks.numpy(), iou.numpy(), low.numpy()


RNG = np.random.default_rng(0)
CASES = {
    "one point, three masks": dict(coords=[[[120.0, 70.0]]], labels=[[1]], multimask=True),
    "one point, one mask": dict(coords=[[[120.0, 70.0]]], labels=[[1]], multimask=False),
    "three sets of two points": dict(
        coords=RNG.uniform(0, 250, (3, 2, 2)), labels=[[1, 0], [1, 1], [0, -1]], multimask=True
    ),
    "box": dict(boxes=[[20.0, 30.0, 200.0, 150.0]], multimask=False),
    "point and box": dict(
        coords=[[[60.0, 80.0]]], labels=[[0]], boxes=[[20.0, 30.0, 200.0, 150.0]], multimask=True
    ),
    "mask input": dict(
        coords=[[[120.0, 70.0]]],
        labels=[[1]],
        mask=RNG.standard_normal((1, 1, 64, 64)).astype(np.float32) * 4,
        multimask=False,
    ),
    "no prompt": dict(multimask=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_torch_decoder(case, small_model, weights_file, embedding):
    c = {"coords": None, "labels": None, "boxes": None, "mask": None, **CASES[case]}
    want = _torch(small_model, embedding, c["coords"], c["labels"], c["boxes"], c["mask"],
                  c["multimask"])  # fmt: skip
    dec = NumpyDecoder.from_file(weights_file)
    request = DecodeRequest(
        INPUT,
        ORIGINAL,
        coords=None if c["coords"] is None else np.asarray(c["coords"], np.float64),
        labels=None if c["labels"] is None else np.asarray(c["labels"], np.float64),
        boxes=None if c["boxes"] is None else np.asarray(c["boxes"], np.float64),
        mask_input=c["mask"],
        multimask_output=c["multimask"],
        return_logits=True,
    )
    got = dec.decode(dec.prepare(embedding.numpy()), request)
    for g, w, name in zip(got, want, ("masks", "iou", "low-res")):
        assert g.shape == w.shape and g.dtype == np.float32, name
        scale = max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-5 * scale, err_msg=name)
    binary = dec.decode(dec.prepare(embedding.numpy()), request.replace(return_logits=False))[0]
    assert binary.dtype == bool
    decided = np.abs(want[0]) > 1e-4  # a pixel this close to the threshold may go either way
    np.testing.assert_array_equal(binary[decided], want[0][decided] > 0)


def test_gelu_is_the_exact_one():
    x = np.concatenate([np.linspace(-12, 12, 200_001), [-1e30, 1e30, 0.0, -0.0]]).astype(np.float32)
    want = torch.nn.functional.gelu(torch.from_numpy(x).double()).numpy()
    got = gelu(x)
    assert got.dtype == np.float32
    err = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    assert err.max() < 4e-7, (x[err.argmax()], got[err.argmax()], want[err.argmax()])
    assert math.isnan(float(gelu(np.array([np.nan], np.float32))[0]))


def test_the_file_states_what_it_is(weights_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="decoder weights not found"):
        NumpyDecoder.from_file(tmp_path / "missing.safetensors")
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": np.zeros(2, np.float32)}, str(other))
    with pytest.raises(ValueError, match="mobilesam.decoder"):
        NumpyDecoder.from_file(other)
    dec = NumpyDecoder.from_file(weights_file)
    with pytest.raises(ValueError, match="embedding"):
        dec.prepare(np.zeros((1, 256, 8, 8), np.float32))


def test_needs_neither_torch_nor_onnxruntime(weights_file, embedding, tmp_path):
    np.save(tmp_path / "emb.npy", embedding.numpy())
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        sys.modules["onnxruntime"] = None
        import numpy as np
        from mobilesam.inference.core import DecodeRequest
        from mobilesam.runtime.numpy_decoder import NumpyDecoder

        dec = NumpyDecoder.from_file({str(weights_file)!r})
        state = dec.prepare(np.load({str(tmp_path / "emb.npy")!r}))
        req = DecodeRequest({INPUT}, {ORIGINAL}, coords=np.array([[[9.0, 9.0]]]),
                            labels=np.ones((1, 1)))
        masks, iou, low = dec.decode(state, req)
        assert masks.shape == (1, 3, *{ORIGINAL}) and masks.dtype == bool
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
