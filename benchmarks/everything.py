"""Segment everything: exact vs fast automatic mask generation, timed in one process.

    python benchmarks/everything.py [IMAGE ...] --png docs/images/everything_bench.png

Without IMAGE arguments, three test photos are derived from the shared photos
(mirrored / cropped / rescaled, so none of them is a file of ../shared/images).
Without --checkpoint, MobileSAM with the generated parity weights (vit_t, seed 0)
is used; the model is loaded by ``mobilesam.loading.load_model`` and the generator
flags' defaults are ``AmgOptions``'. For each image: the exact generator, then the
fast one (fresh, so its encoder runs too), then the fast one again on the same
image (embedding reused).
Prints time per image with the encoder / decoder / post-processing split, the
speed ratio, and how well the fast masks match the exact ones (one-to-one greedy
matching by mask IoU); draws a bar chart.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def derived_images() -> dict[str, np.ndarray]:
    """Test photos made from the shared ones: not byte-identical to any of them."""
    from PIL import Image

    from mobilesam.io import read_image

    img = SHARED / "images"
    groceries = read_image(img / "groceries.jpg")[:, ::-1]  # mirrored, 800x534
    picture = read_image(img / "picture1.jpg")[40:700, 60:740]  # cropped, 680x660
    truck = Image.fromarray(read_image(img / "truck.jpg")[150:1150, 200:1700, :])
    truck = np.asarray(truck.resize((1050, 700), Image.Resampling.BILINEAR))[:, ::-1]
    return {
        "groceries_mirrored": np.ascontiguousarray(groceries),
        "picture1_crop": np.ascontiguousarray(picture),
        "truck_crop_scaled_mirrored": np.ascontiguousarray(truck),
    }


def parity_checkpoint(tmp: Path) -> Path:
    """The generated parity weights (vit_t, seed 0) written to a .pt file."""
    import torch

    sys.path.insert(0, str(SHARED / "parity"))
    import weights  # the deterministic generator beside the parity fixtures

    path = tmp / "vit_t_seed0.pt"
    torch.save(weights.generate_state_dict(weights.load_keys("vit_t"), 0), path)
    return path


def match_masks(exact: list[np.ndarray], fast: list[np.ndarray], min_iou: float) -> dict:
    """One-to-one greedy matching by IoU (highest first); counts pairs with IoU >= min_iou.

    IoUs come from pycocotools on RLEs, so hundreds of full-size masks stay cheap.
    """
    from pycocotools import mask as mask_utils

    n, m = len(exact), len(fast)
    if n == 0 or m == 0:
        return {"exact": n, "fast": m, "matched": 0, "extra": m, "min_iou": None}

    def rles(masks: list[np.ndarray]) -> list[dict]:
        return [mask_utils.encode(np.asfortranarray(x.astype(np.uint8))) for x in masks]

    iou = np.asarray(mask_utils.iou(rles(exact), rles(fast), [0] * m)).reshape(n, m)
    used_a, used_b, ious = set(), set(), []
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), m)
        if iou[i, j] < min_iou:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        ious.append(float(iou[i, j]))
    k = len(ious)
    return {"exact": n, "fast": m, "matched": k, "extra": m - k, "min_iou": min(ious, default=None)}


def tune_malloc() -> None:
    """Keep freed memory in glibc's heap (no mmap / trim for large blocks), process-wide.

    Both paths then run without the page faults of freshly mapped multi-megabyte
    tensors; the default run measures the allocator as a user would have it.
    """
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 2**31 - 1)):
        raise RuntimeError("mallopt refused the settings")


def run(args: argparse.Namespace) -> dict:
    import torch

    if args.tune_malloc:
        tune_malloc()

    from mobilesam import SamAutomaticMaskGenerator
    from mobilesam.io import read_image
    from mobilesam.loading import load_model

    if args.images:
        images = {Path(p).stem: read_image(p) for p in args.images}
    else:
        images = derived_images()
    encoder = None
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else parity_checkpoint(Path(tmp))
        model = load_model(args.model, ckpt)
        if args.fast_backend:  # the fast side's image encoder on a registered backend
            from mobilesam.backends.predictor import Predictor

            chosen = Predictor.load(args.model, ckpt, backend=args.fast_backend)
            if not chosen.backend.startswith("torch"):
                encoder = chosen.encoder
            print(f"fast side's encoder: {chosen.backend}", flush=True)
    params = {
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_score_thresh,
        "box_nms_thresh": args.box_nms_thresh,
    }
    rows = []
    for name, img in images.items():
        row = {"image": name, "size": list(img.shape[:2])}
        masks = {}
        for label, fast in (("exact", False), ("fast", True)):
            gen = SamAutomaticMaskGenerator(
                model, fast=fast, encoder=encoder if fast else None, **params
            )
            t0 = time.perf_counter()
            anns = gen.generate(img)
            row[label] = {"total": time.perf_counter() - t0, **dict(gen.timings)}
            masks[label] = [a["segmentation"] for a in anns]
            if fast:
                t0 = time.perf_counter()
                gen.generate(img)  # same image again: the embedding is reused
                row["fast_again"] = {"total": time.perf_counter() - t0, **dict(gen.timings)}
        row["speedup"] = row["exact"]["total"] / row["fast"]["total"]
        row["speedup_again"] = row["exact"]["total"] / row["fast_again"]["total"]
        row["agreement"] = match_masks(masks["exact"], masks["fast"], args.min_iou)
        rows.append(row)
        a = row["agreement"]
        print(
            f"{name} {img.shape[1]}x{img.shape[0]}: exact {row['exact']['total']:.1f}s, "
            f"fast {row['fast']['total']:.1f}s ({row['speedup']:.2f}x), again "
            f"{row['fast_again']['total']:.1f}s ({row['speedup_again']:.2f}x); masks exact "
            f"{a['exact']} fast {a['fast']} matched {a['matched']} extra {a['extra']}",
            flush=True,
        )
    total_exact = sum(r["exact"]["total"] for r in rows)
    total_fast = sum(r["fast"]["total"] for r in rows)
    n_exact = sum(r["agreement"]["exact"] for r in rows)
    n_matched = sum(r["agreement"]["matched"] for r in rows)
    n_extra = sum(r["agreement"]["extra"] for r in rows)
    summary = {
        "speedup": total_exact / total_fast,
        "matched_fraction": n_matched / n_exact if n_exact else None,
        "extra_fraction": n_extra / n_exact if n_exact else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "params": params,
        "checkpoint": str(args.checkpoint or "generated parity weights vit_t seed 0"),
        "malloc_tuned": bool(args.tune_malloc),
        "fast_encoder": args.fast_backend or "torch (the model's own)",
    }
    return {"rows": rows, "summary": summary}


def print_table(result: dict) -> None:
    print()
    print("| image | masks exact / fast / matched | exact s (enc / dec / post) | "
          "fast s (enc / dec / post) | speed-up | again s | speed-up |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        e, f, g, a = r["exact"], r["fast"], r["fast_again"], r["agreement"]

        def split(t: dict) -> str:
            enc, dec, post = (t.get(k, 0.0) for k in ("encoder", "decoder", "postprocess"))
            return f"{t['total']:.1f} ({enc:.1f} / {dec:.1f} / {post:.1f})"

        print(
            f"| {r['image']} {r['size'][1]}x{r['size'][0]} | {a['exact']} / {a['fast']} / "
            f"{a['matched']} | {split(e)} | {split(f)} | {r['speedup']:.2f}x | "
            f"{g['total']:.1f} | {r['speedup_again']:.2f}x |"
        )
    s = result["summary"]
    mf = "n/a" if s["matched_fraction"] is None else f"{100 * s['matched_fraction']:.1f}%"
    xf = "n/a" if s["extra_fraction"] is None else f"{100 * s['extra_fraction']:.1f}%"
    print(f"\noverall speed-up {s['speedup']:.2f}x; exact masks matched (IoU >= 0.9) {mf}; "
          f"extra fast masks {xf}")  # fmt: skip


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilesam.visualize import save_figure

    rows = result["rows"]
    labels, parts = [], []
    for r in rows:
        for key, tag in (("exact", "exact"), ("fast", "fast"), ("fast_again", "fast, again")):
            t = r[key]
            labels.append(f"{r['image']}\n{tag}")
            parts.append([t.get(k, 0.0) for k in ("encoder", "decoder", "postprocess")])
    parts_arr = np.array(parts)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.5))
    y = np.arange(len(labels))[::-1]
    left = np.zeros(len(labels))
    for k, (name, colour) in enumerate(
        (("encoder", "#4c72b0"), ("decoder", "#dd8452"), ("post-processing", "#55a868"))
    ):
        ax.barh(y, parts_arr[:, k], left=left, color=colour, label=name)
        left += parts_arr[:, k]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("seconds per image")
    s = result["summary"]
    ax.set_title(f"Segment everything, exact vs fast: {s['speedup']:.1f}x faster overall")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    from mobilesam.inference.amg_options import AmgOptions

    defaults = AmgOptions()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="*", help="photos (default: three derived test photos)")
    ap.add_argument("--model", default="vit_t")
    ap.add_argument("--checkpoint", default=None, help="default: generated parity weights")
    ap.add_argument("--points-per-side", type=int, default=defaults.points_per_side)
    ap.add_argument("--points-per-batch", type=int, default=defaults.points_per_batch)
    ap.add_argument("--pred-iou-thresh", type=float, default=defaults.pred_iou_thresh)
    ap.add_argument("--stability-score-thresh", type=float, default=defaults.stability_score_thresh)
    ap.add_argument(
        "--box-nms-thresh",
        type=float,
        default=defaults.box_nms_thresh,
        help="1.0 keeps nearly every candidate: an agreement check on many masks",
    )
    ap.add_argument("--min-iou", type=float, default=0.9, help="IoU for a matched mask")
    ap.add_argument(
        "--fast-backend",
        default=None,
        help="run the fast side's image encoder on this backend (e.g. auto, openvino-bf16); "
        "default: the model's own torch encoder on both sides",
    )
    ap.add_argument(
        "--tune-malloc",
        action="store_true",
        help="glibc: no mmap/trim for large blocks (both paths; see tune_malloc)",
    )
    ap.add_argument("--png", type=Path, default=None, help="bar chart output")
    ap.add_argument("--json", type=Path, default=None, help="raw numbers output")
    args = ap.parse_args(argv)
    result = run(args)
    print_table(result)
    if args.png:
        draw(result, args.png)
        print(f"chart: {args.png}")
    if args.json:
        from mobilesam.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
