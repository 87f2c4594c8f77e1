"""The torch-free runtime: same API and outputs as SamPredictor, no torch needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest

from mobilesam import SamPredictor
from mobilesam.runtime import OnnxPredictor

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    return np.kron(base, np.ones((15, 15, 1), np.uint8))  # 180x240, blocky


@pytest.fixture(scope="module")
def pair(small_model, small_onnx_dir, image):
    onnx_pred = OnnxPredictor.from_dir(small_onnx_dir)
    torch_pred = SamPredictor(small_model)
    onnx_pred.set_image(image)
    torch_pred.set_image(image)
    return onnx_pred, torch_pred


PROMPTS = [
    {"point_coords": [[120.0, 90.0]], "point_labels": [1]},
    {"point_coords": [[30.5, 40.25], [200.0, 150.0], [10.0, 170.0]], "point_labels": [1, 0, -1]},
    {"box": [40.0, 30.0, 200.0, 160.0]},
    {"box": [[10.0, 20.0, 100.0, 90.0]], "point_coords": [[50.0, 50.0]], "point_labels": [0]},
]


@pytest.mark.parametrize("prompt", PROMPTS, ids=["point", "points", "box", "box+point"])
@pytest.mark.parametrize("multimask", [True, False])
def test_matches_sam_predictor(pair, prompt, multimask):
    onnx_pred, torch_pred = pair
    mo, so, lo = onnx_pred.predict(**prompt, multimask_output=multimask)
    mt, st, lt = torch_pred.predict(**prompt, multimask_output=multimask)
    assert mo.dtype == mt.dtype == bool and mo.shape == mt.shape == (len(st), 180, 240)
    np.testing.assert_allclose(lo, lt, atol=1.4e-4, rtol=0)
    np.testing.assert_allclose(so, st, atol=1e-5, rtol=0)
    assert all((a != b).sum() <= 16 for a, b in zip(mo, mt))
    logits_o, _, _ = onnx_pred.predict(**prompt, multimask_output=multimask, return_logits=True)
    logits_t, _, _ = torch_pred.predict(**prompt, multimask_output=multimask, return_logits=True)
    np.testing.assert_allclose(logits_o, logits_t, atol=2.7e-4, rtol=0)


def test_embedding_and_mask_input(pair):
    onnx_pred, torch_pred = pair
    emb = onnx_pred.get_image_embedding()
    np.testing.assert_allclose(emb, torch_pred.get_image_embedding().numpy(), atol=1.3e-5, rtol=0)
    _, scores, low = torch_pred.predict(point_coords=[[60, 60]], point_labels=[1])
    prev = low[np.argmax(scores)][None]
    _, so, lo = onnx_pred.predict(point_coords=[[60, 60]], point_labels=[1], mask_input=prev)
    _, st, lt = torch_pred.predict(point_coords=[[60, 60]], point_labels=[1], mask_input=prev)
    np.testing.assert_allclose(lo, lt, atol=1.4e-4, rtol=0)
    assert onnx_pred.original_size == torch_pred.original_size
    assert onnx_pred.input_size == torch_pred.input_size


def test_predict_points_equals_single_calls(pair):
    onnx_pred, _ = pair
    points = np.array([[[20.0, 30.0]], [[150.0, 100.0]], [[230.0, 170.0]]])
    masks, scores, low = onnx_pred.predict_points(points, np.ones((3, 1)))
    assert masks.shape == (3, 3, 180, 240)
    for i in range(3):
        m, s, lo = onnx_pred.predict(point_coords=points[i], point_labels=[1])
        np.testing.assert_allclose(low[i], lo, atol=1e-5, rtol=0)
        np.testing.assert_allclose(scores[i], s, atol=1e-6, rtol=0)


def test_set_embedding_reuses_a_stored_embedding(small_onnx_dir, pair):
    onnx_pred, _ = pair
    other = OnnxPredictor.from_dir(small_onnx_dir)
    other.set_embedding(onnx_pred.get_image_embedding(), onnx_pred.original_size)
    a = other.predict(box=[40, 30, 200, 160])
    b = onnx_pred.predict(box=[40, 30, 200, 160])
    np.testing.assert_array_equal(a[2], b[2])
    with pytest.raises(ValueError, match="shape"):
        other.set_embedding(np.zeros((1, 256, 8, 8)), (10, 10))


def test_errors(small_onnx_dir, pair, tmp_path):
    fresh = OnnxPredictor.from_dir(small_onnx_dir)
    with pytest.raises(RuntimeError, match="set_image"):
        fresh.predict(point_coords=[[1, 1]], point_labels=[1])
    onnx_pred, _ = pair
    with pytest.raises(ValueError, match="point_labels"):
        onnx_pred.predict(point_coords=[[1, 1]], point_labels=[5])
    with pytest.raises(ValueError, match="at least one point or a box"):
        onnx_pred.predict()
    with pytest.raises(ValueError, match="uint8"):
        fresh.set_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(FileNotFoundError):
        OnnxPredictor(tmp_path / "missing.onnx", small_onnx_dir / "decoder.onnx")
    with pytest.raises(ValueError, match="one mask per prompt"):
        OnnxPredictor(small_onnx_dir / "encoder.onnx", small_onnx_dir / "decoder_single_mask.onnx")


def test_int8_runtime_runs(small_onnx_dir, image):
    pred = OnnxPredictor.from_dir(small_onnx_dir, int8=True)
    pred.set_image(image)
    masks, scores, low = pred.predict(point_coords=[[120, 90]], point_labels=[1])
    assert masks.shape == (3, 180, 240) and np.isfinite(low).all()


_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    {guard}
    import mobilesam.runtime
    from mobilesam.runtime import OnnxPredictor
    assert "torch" not in sys.modules, "torch was imported"
    pred = OnnxPredictor.from_dir(sys.argv[1])
    image = np.load(sys.argv[2])["image"]
    pred.set_image(image)
    masks, scores, low = pred.predict(point_coords=[[120, 90]], point_labels=[1])
    np.savez(sys.argv[3], masks=masks, scores=scores, low=low)
    """
)

# Makes `import torch` fail, as in an environment where it is not installed.
_BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc
    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, _NoTorch())
    """
)


def _run_torch_free(python, guard, small_onnx_dir, image, tmp_path, pair):
    script = tmp_path / "predict.py"
    script.write_text(_SCRIPT.format(guard=guard))
    np.savez(tmp_path / "image.npz", image=image)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = tmp_path / "out.npz"
    proc = subprocess.run(
        [str(python), str(script), str(small_onnx_dir), str(tmp_path / "image.npz"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    _, torch_pred = pair
    mt, st, lt = torch_pred.predict(point_coords=[[120, 90]], point_labels=[1])
    with np.load(out) as z:
        np.testing.assert_allclose(z["low"], lt, atol=1.4e-4, rtol=0)
        np.testing.assert_allclose(z["scores"], st, atol=1e-5, rtol=0)


def test_runtime_does_not_import_torch(small_onnx_dir, image, tmp_path, pair):
    _run_torch_free(sys.executable, _BLOCK_TORCH, small_onnx_dir, image, tmp_path, pair)


@pytest.mark.slow
def test_runtime_in_a_venv_without_torch(small_onnx_dir, image, tmp_path, pair):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "numpy", "pillow", "onnxruntime"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if pip.returncode != 0:
        pytest.skip(f"pip could not install numpy/pillow/onnxruntime: {pip.stderr[-500:]}")
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
    assert probe.returncode != 0, "torch is importable in the fresh venv"
    _run_torch_free(python, "", small_onnx_dir, image, tmp_path, pair)
