"""bench.report: the printed tables say what the report holds; the chart is written."""

from __future__ import annotations

from mobilesam.bench.report import format_table, plot_report

STAGES = ("encoder", "decoder_1", "decoder_many", "end_to_end")


def _backend(ms: float, speedup: float | None) -> dict:
    entry = {s: {"min_ms": ms, "median_ms": ms * 1.5, "runs": 3} for s in STAGES}
    entry["gflops_per_s"] = dict.fromkeys(STAGES, 2.0)
    entry["fraction_of_peak"] = dict.fromkeys(STAGES, 0.25)
    if speedup is not None:
        entry["speedup_vs_exact"] = dict.fromkeys(STAGES, speedup)
        entry["fidelity"] = {
            "embedding_max_abs": 0.0,
            "low_res_logits_max_abs": 0.0,
            "mask_iou_min_1": 0.5,
            "mask_iou_mean_many": 0.75,
            "mask_iou_min_many": 0.25,
        }
    return entry


def _report() -> dict:
    params = {
        "image_encoder": 110,
        "image_encoder_forward": 100,
        "prompt_encoder": 20,
        "mask_decoder": 30,
    }
    return {
        "machine": {
            "cpu": "Test CPU",
            "cores": 2,
            "torch": "2.x",
            "torch_threads": 2,
            "onnxruntime": "1.x",
            "gpu": None,
            "matmul_peak": {"gflops": 8.0, "size": 64},
        },
        "models": [
            {
                "model": "vit_t",
                "image_size": 256,
                "input_image": [48, 64],
                "many_prompts": 7,
                "params": params,
                "flops": {"encoder": 3e9, "decoder_1": 1e8, "decoder_many": 7e8},
                "backends": {"torch-exact": _backend(100, 1.0), "ort-fp32": _backend(40, 2.5)},
            }
        ],
    }


def test_table_shows_latencies_ratios_and_fidelity():
    text = format_table(_report())
    assert "Measured fp32 matmul peak: 8.0 GFLOP/s (64^3 torch.mm)" in text
    assert "### vit_t (input 256px, image 48x64)" in text
    assert "encoder 100 (+10 unused head)" in text
    assert "| decoder 7 ms |" in text
    row = next(line for line in text.splitlines() if line.startswith("| ort-fp32 | 40/60"))
    assert row.endswith("| 2.50x / 2.50x / 2.50x / 2.50x |")
    fid = [line for line in text.splitlines() if line.startswith("| ort-fp32 | 2.0 /")]
    assert fid == ["| ort-fp32 | 2.0 / 2.0 / 2.0 | 25% / 25% / 25% | 0 | 0 | 0.5000 | "
                   "0.7500 / 0.2500 |"]  # fmt: skip


def test_chart_is_written(tmp_path):
    path = plot_report(_report(), tmp_path / "out" / "bench.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["bench.png"]
