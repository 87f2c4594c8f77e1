"""``mobilesam export onnx`` and ``mobilesam bench`` on the small model."""

from __future__ import annotations

import json

import onnxruntime as ort

from mobilesam.checkpoint import save_checkpoint
from mobilesam.cli import main


def test_export_cli(small_model, tmp_path, capsys):
    ckpt = save_checkpoint(small_model, tmp_path / "small.safetensors")
    out = tmp_path / "onnx"
    code = main(["export", "onnx", "--checkpoint", str(ckpt), "--out", str(out), "--no-validate"])
    assert code == 0, capsys.readouterr().err
    names = [i.name for i in ort.InferenceSession(str(out / "decoder.onnx")).get_inputs()]
    assert names[:3] == ["image_embeddings", "point_coords", "point_labels"]
    assert json.loads((out / "export.json").read_text())["checks"] == []


def test_export_cli_errors(tmp_path, capsys):
    code = main(["export", "onnx", "--checkpoint", str(tmp_path / "nope.pt"), "--out", "x"])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_bench_cli(small_onnx_dir, tmp_path, capsys):
    # --random-weights --image-size 256 builds the same model as the small_model fixture.
    out = tmp_path / "bench"
    args = ["bench", "--random-weights", "--image-size", "256", "--onnx-dir", str(small_onnx_dir)]
    args += ["--out", str(out), "--repeats", "1", "--repeats-many", "1", "--prompts", "3"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| ort-int8 |" in text and "speed-up" in text
    report = json.loads((out / "bench.json").read_text())
    model = report["models"][0]
    assert set(model["backends"]) == {"torch-exact", "torch-optimised", "ort-fp32", "ort-int8"}
    assert model["flops"]["encoder"] > 0 and model["flops"]["decoder_many"] > 0
    for name in ("torch-optimised", "ort-fp32"):
        fid = model["backends"][name]["fidelity"]
        assert fid["embedding_max_abs"] < 1.3e-5 and fid["low_res_logits_max_abs"] < 1.4e-4
    assert (out / "bench.png").stat().st_size > 10_000


def test_bench_cli_rejects_bad_backend(small_onnx_dir, tmp_path, capsys):
    args = ["bench", "--random-weights", "--image-size", "256", "--backends", "torch-exact,gpu"]
    args += ["--out", str(tmp_path), "--onnx-dir", str(small_onnx_dir)]
    assert main(args) == 2
    assert "unknown backend" in capsys.readouterr().err


def test_bench_cli_load_and_image_errors(tmp_path, capsys):
    base = ["bench", "--out", str(tmp_path), "--backends", "torch-exact"]
    assert main([*base, "--model", "vit_q", "--random-weights"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'vit_q'" in err and "pass --random-weights" not in err
    assert main([*base, "--checkpoint", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and err.rstrip().endswith("(or pass --random-weights)")
    missing = tmp_path / "photo.jpg"
    assert main([*base, "--random-weights", "--image-size", "256", "--image", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "photo.jpg: image file not found" in err
    assert not (tmp_path / "bench.json").exists()
