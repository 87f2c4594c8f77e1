"""The bf16, OpenVINO and int8 backends on a small model, against the exact path.

Each is held to its precision's expectation: float32 backends to the parity
tolerances, bf16 ones to the faithful-mask rule, int8 ones to a sanity floor
(their fidelity is reported by ``mobilesam bench``, not promised). A backend
this machine cannot run is skipped with its ``check()`` reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mobilesam.backends import LoadContext, get_backend
from mobilesam.backends.fidelity import example_photos, measure_fidelity
from mobilesam.inference.core import PredictorCore

SRC = Path(__file__).resolve().parents[2] / "src"
NEW = ("torch-bf16", "openvino-fp32", "openvino-bf16", "ort-int8", "ort-int8-static")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(example_photos(1)[0][::4, ::4])


@pytest.fixture(scope="module")
def ctx(small_model, small_onnx_dir, photo, tmp_path_factory) -> LoadContext:
    """The shared small export copied (converts write beside it), calibrated on ``photo``."""
    from mobilesam.export.numpy_weights import save_decoder_weights

    art = tmp_path_factory.mktemp("artifacts")
    for name in ("encoder.onnx", "decoder.onnx"):
        shutil.copy(small_onnx_dir / name, art / name)
    save_decoder_weights(small_model, art / "decoder.safetensors")  # the OpenVINO backends'
    return LoadContext(
        artifacts=art, model=lambda: small_model, options={"calibration_images": [photo]}
    )


def _run_ok(script: str) -> None:
    """Run ``script`` in a fresh interpreter on this checkout; it must print ``ok`` last."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def _usable(name: str) -> None:
    reason = get_backend(name).check()
    if reason is not None:
        pytest.skip(f"{name}: {reason}")


@pytest.mark.parametrize("name", NEW)
def test_backend_matches_the_exact_path(name, ctx, photo):
    _usable(name)
    spec = get_backend(name)
    if spec.convert is not None and not all((ctx.artifacts / a).is_file() for a in spec.artifacts):
        spec.convert(ctx)
    assert all((ctx.artifacts / a).is_file() for a in spec.artifacts)
    f = measure_fidelity(spec.load(ctx), get_backend("torch-exact").load(ctx), [photo], grid=4)
    if spec.precision == "fp32":
        assert f.within_parity, f
        assert f.mask_iou_min > 0.99, f
    elif spec.precision == "bf16":
        assert f.faithful, f
        assert f.embedding_max_abs < 0.5, f
    else:  # int8: a broken quantisation, not a fidelity claim
        assert f.mask_iou_mean > 0.7, f


@pytest.mark.parametrize("name", ["openvino-fp32", "openvino-bf16"])
def test_openvino_answers_like_onnxruntime(name, ctx, photo):
    _usable(name)
    ov = PredictorCore(*get_backend(name).load(ctx))
    ort = PredictorCore(*get_backend("ort-fp32").load(ctx))
    for core in (ov, ort):
        core.set_image(photo)
    box = np.array([10, 10, 120, 90])
    got = ov.predict(box=box, multimask_output=False)
    want = ort.predict(box=box, multimask_output=False)
    assert got[0].shape == want[0].shape and got[0].dtype == bool
    tol = 1e-4 if name == "openvino-fp32" else 0.1
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=tol)
    # the compiled blobs are cached beside the graphs
    assert any((ctx.artifacts / "openvino-cache").iterdir())


def test_bf16_backends_refuse_a_cpu_without_bf16(monkeypatch):
    from mobilesam.backends import cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    for name in ("torch-bf16", "openvino-bf16"):
        reason = get_backend(name).check()
        assert reason is not None and ("bf16" in reason or "not installed" in reason)


def test_openvino_runs_without_torch(ctx, photo, tmp_path):
    _usable("openvino-fp32")
    np.save(tmp_path / "photo.npy", photo)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # importing torch now fails
        import numpy as np
        from pathlib import Path
        from mobilesam.backends import LoadContext, get_backend
        from mobilesam.inference.core import PredictorCore

        def no_model():
            raise AssertionError("a torch-free backend asked for the torch model")

        ctx = LoadContext(artifacts=Path({str(ctx.artifacts)!r}), model=no_model)
        core = PredictorCore(*get_backend("openvino-fp32").load(ctx))
        core.set_image(np.load({str(tmp_path / "photo.npy")!r}))
        masks, scores, low = core.predict(np.array([[60.0, 40.0]]), np.array([1]))
        loaded = [m for m in sys.modules if sys.modules[m]]
        assert masks.shape[0] == 3 and "torch" not in loaded
        assert "onnxruntime" not in loaded  # the decoder is numpy's
        assert "openvino.tools.ovc" not in loaded  # nor is OpenVINO's converter loaded
        print("ok")
        """
    )
    _run_ok(script)


def test_openvino_decodes_many_prompt_sets_in_chunks(ctx, photo):
    from mobilesam.runtime.openvino_backend import OpenVinoDecoder

    _usable("openvino-fp32")
    enc, _ = get_backend("openvino-fp32").load(ctx)  # the backends decode with numpy
    dec = OpenVinoDecoder(
        ctx.artifacts / "decoder.onnx", "fp32", None, enc.mask_threshold, enc.mask_input_size
    )
    core = PredictorCore(enc, dec)
    core.set_image(photo)
    pts = np.random.default_rng(0).uniform(10, 120, (5, 1, 2))
    whole = core.predict_batch([pts], [np.ones((5, 1))])[0]
    dec.max_sets = 2  # 2 + 2 + 1
    chunked = core.predict_batch([pts], [np.ones((5, 1))])[0]
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)


def test_openvino_second_load_compiles_from_the_path(ctx, photo, monkeypatch):
    import openvino as ov

    from mobilesam.runtime.openvino_backend import OpenVinoSession

    _usable("openvino-fp32")
    graph = ctx.artifacts / "encoder.onnx"
    cache = ctx.artifacts / "openvino-cache"
    first = OpenVinoSession(graph, "fp32", cache_dir=cache)  # writes the metadata sidecar
    sidecar = cache / "encoder.onnx.meta.json"
    assert sidecar.is_file()
    reads: list[str] = []
    real = ov.Core.read_model
    monkeypatch.setattr(
        ov.Core, "read_model", lambda self, *a, **k: reads.append(1) or real(self, *a, **k)
    )
    second = OpenVinoSession(graph, "fp32", cache_dir=cache)
    assert reads == [] and second.meta == first.meta  # the ONNX file was not parsed again
    side = int(first.meta["mobilesam.image_size"])
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 3, side, side))
    feed = {"image": pixels.astype(np.float32)}
    np.testing.assert_array_equal(first.run(None, feed)[0], second.run(None, feed)[0])
    # A sidecar written for another version of the file is not trusted.
    os.utime(graph, ns=(0, 0))
    third = OpenVinoSession(graph, "fp32", cache_dir=cache)
    assert reads == [1] and third.meta == first.meta


def test_openvino_load_raises_the_encoders_error_from_its_helper_thread(ctx, tmp_path):
    _usable("openvino-fp32")
    art = tmp_path / "art"
    art.mkdir()
    shutil.copy(ctx.artifacts / "decoder.safetensors", art / "decoder.safetensors")
    (art / "encoder.onnx").write_bytes(b"not a graph")  # the encoder loads in another thread
    broken = LoadContext(artifacts=art, model=ctx.model)
    with pytest.raises(Exception, match="encoder.onnx"):
        get_backend("openvino-fp32").load(broken)
    shutil.copy(ctx.artifacts / "encoder.onnx", art / "encoder.onnx")
    enc, dec = get_backend("openvino-fp32").load(broken)
    assert (dec.mask_threshold, dec.mask_input_size) == (enc.mask_threshold, enc.mask_input_size)


def test_openvino_conversion_writes_the_graph_and_the_decoder_weights(ctx, tmp_path):
    from mobilesam.runtime.numpy_decoder import NumpyDecoder

    spec = get_backend("openvino-fp32")
    assert spec.artifacts == ("encoder.onnx", "decoder.safetensors")
    spec.convert(LoadContext(artifacts=tmp_path, model=ctx.model))
    assert all((tmp_path / a).is_file() for a in spec.artifacts)
    dec = NumpyDecoder.from_file(tmp_path / "decoder.safetensors")
    assert dec.image_size == ctx.model().image_size


def test_openvino_converter_still_works_after_the_lean_import(ctx):
    _usable("openvino-fp32")
    script = textwrap.dedent(
        f"""
        import sys
        from mobilesam.runtime import openvino_backend  # imports openvino without its converter
        assert "openvino.tools.ovc" not in sys.modules
        import openvino
        model = openvino.convert_model({str(ctx.artifacts / "encoder.onnx")!r})  # loads it now
        assert "openvino.tools.ovc" in sys.modules and isinstance(model, openvino.Model)
        print("ok")
        """
    )
    _run_ok(script)
