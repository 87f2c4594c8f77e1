"""Text table and bar chart of a benchmark report (the dict ``run_suite`` returns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..visualize import save_figure

STAGE_LABELS = {
    "encoder": "encoder",
    "decoder_1": "decoder, 1 prompt",
    "decoder_many": "decoder, {n} prompts",
    "end_to_end": "set_image + predict",
}


def _fmt_ms(entry: dict[str, Any]) -> str:
    return f"{entry['min_ms']:.0f}/{entry['median_ms']:.0f}"


def format_table(report: dict[str, Any]) -> str:
    """Markdown tables: latency (min/median ms) with ratios, efficiency, fidelity."""
    m = report["machine"]
    peak = m["matmul_peak"]
    flags = f" ({', '.join(m['cpu_flags'])})" if m.get("cpu_flags") else ""
    openvino = f"OpenVINO {m['openvino']}, " if m.get("openvino") else ""
    lines = [
        f"Machine: {m['cpu']}{flags}, {m['cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}, {openvino}"
        f"GPU: {m['gpu'] or 'none'}. Measured fp32 matmul peak: {peak['gflops']:.1f} GFLOP/s "
        f"({peak['size']}^3 torch.mm).",
    ]
    for model in report["models"]:
        n = model["many_prompts"]
        fl = model["flops"]
        pt = model["params"]
        lines += [
            "",
            f"### {model['model']} (input {model['image_size']}px, image "
            f"{model['input_image'][0]}x{model['input_image'][1]})",
            "",
            f"Parameters: encoder {pt['image_encoder_forward']:,} "
            f"(+{pt['image_encoder'] - pt['image_encoder_forward']:,} unused head), "
            f"prompt encoder {pt['prompt_encoder']:,}, mask decoder {pt['mask_decoder']:,}. "
            f"Counted FLOPs: encoder {fl['encoder'] / 1e9:.2f} G, "
            f"decoder {fl['decoder_1'] / 1e9:.2f} G "
            f"(1 prompt), {fl['decoder_many'] / 1e9:.1f} G ({n} prompts).",
            "",
            "| backend | encoder ms | decoder 1 ms | decoder "
            f"{n} ms | end-to-end ms | speed-up enc / dec1 / dec{n} / e2e |",
            "|---|---|---|---|---|---|",
        ]
        for name, b in model["backends"].items():
            sp = b.get("speedup_vs_exact", {})
            ratios = " / ".join(f"{sp.get(s, float('nan')):.2f}x" for s in STAGE_LABELS)
            e2e = _fmt_ms(b["end_to_end"])
            if "end_to_end_cached" in b:
                e2e += f" (cached image: {b['end_to_end_cached']['median_ms']:.0f})"
            lines.append(
                f"| {name} | {_fmt_ms(b['encoder'])} | {_fmt_ms(b['decoder_1'])} | "
                f"{_fmt_ms(b['decoder_many'])} | {e2e} | {ratios} |"
            )
        lines += [
            "",
            "| backend | GFLOP/s enc / dec1 / dec"
            f"{n} | of peak enc / dec1 / dec{n} | embedding max abs diff | low-res logit "
            "max abs diff | mask IoU min (1 prompt) | mask IoU mean / min "
            f"({n} prompts) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, b in model["backends"].items():
            g = b["gflops_per_s"]
            f = b["fraction_of_peak"]
            fid = b.get("fidelity", {})
            lines.append(
                f"| {name} | {g['encoder']:.1f} / {g['decoder_1']:.1f} / {g['decoder_many']:.1f} | "
                f"{f['encoder']:.0%} / {f['decoder_1']:.0%} / {f['decoder_many']:.0%} | "
                f"{fid.get('embedding_max_abs', float('nan')):.2g} | "
                f"{fid.get('low_res_logits_max_abs', float('nan')):.2g} | "
                f"{fid.get('mask_iou_min_1', float('nan')):.4f} | "
                f"{fid.get('mask_iou_mean_many', float('nan')):.4f} / "
                f"{fid.get('mask_iou_min_many', float('nan')):.4f} |"
            )
        lines += _faithfulness_table(model)
    return "\n".join(lines)


def _faithfulness_table(model: dict[str, Any]) -> list[str]:
    """The fixed fidelity evaluation (mobilesam.backends.fidelity) per backend."""
    rows = {n: b for n, b in model["backends"].items() if "faithfulness" in b}
    lines: list[str] = []
    if rows:
        f0 = next(iter(rows.values()))["faithfulness"]
        emb_tol = f0.get("embedding_tolerance", 1.3e-5)
        low_tol = f0.get("low_res_tolerance", 1.4e-4)
        lines += [
            "",
            f"Fidelity against torch-exact ({f0['masks']} masks: point grid, boxes, "
            "refinement; faithful = IoU mean >= 0.98 and min >= 0.90; parity = embedding "
            f"<= {emb_tol:.2g} and low-res logits <= {low_tol:.2g}, the parity tolerances "
            "scaled to this model's outputs):",
            "",
            "| backend | precision | mask IoU mean | mask IoU min | low-res logit max abs diff | "
            "embedding max abs diff | faithful | within fp32 parity |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, b in rows.items():
            f = b["faithfulness"]
            lines.append(
                f"| {name} | {b.get('precision', '?')} | {f['mask_iou_mean']:.4f} | "
                f"{f['mask_iou_min']:.4f} | {f['low_res_max_abs']:.2g} | "
                f"{f['embedding_max_abs']:.2g} | {'yes' if f['faithful'] else 'NO'} | "
                f"{'yes' if f['within_parity'] else 'no'} |"
            )
    for name, reason in model.get("skipped", {}).items():
        lines.append(f"\nSkipped {name}: {reason}")
    return lines


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Grouped horizontal bars: median latency per stage and backend (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    fig, axes = plt.subplots(
        len(models), 1, figsize=(10.5, 3.8 * len(models)), squeeze=False, constrained_layout=True
    )
    colors = {
        "torch-exact": "#7f7f7f",
        "torch-optimised": "#1f77b4",
        "ort-fp32": "#2ca02c",
        "ort-int8": "#d62728",
        "ort-int8-static": "#ff7f0e",
        "torch-bf16": "#9467bd",
        "openvino-fp32": "#17becf",
        "openvino-bf16": "#8c564b",
    }
    for ax, model in zip(axes[:, 0], models):
        names = list(model["backends"])
        stages = list(STAGE_LABELS)
        height = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            b = model["backends"][name]
            values = [b[s]["median_ms"] for s in stages]
            ys = [k + i * height for k in range(len(stages))]
            ax.barh(ys, values, height, label=name, color=colors.get(name))
            sp = b.get("speedup_vs_exact", {})
            for y, v, s in zip(ys, values, stages):
                if s in sp:
                    ax.text(v, y, f" {v:.0f} ms ({sp[s]:.1f}x)", va="center", fontsize=7)
        ax.set_yticks([k + 0.4 - height / 2 for k in range(len(stages))])
        ax.set_yticklabels([STAGE_LABELS[s].format(n=model["many_prompts"]) for s in stages])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("median latency, ms (log scale; ratio = speed-up vs torch-exact)")
        ax.set_title(
            f"{model['model']}: {report['machine']['cpu']}, {report['machine']['cores']} cores"
        )
        top = max(b[s]["median_ms"] for b in model["backends"].values() for s in stages)
        ax.set_xlim(right=top * 4)  # room for the labels
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return save_figure(fig, path, dpi=110)
