"""``mobilesam models``: the registered models and their parameter counts."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list registered models with parameter counts")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def model_rows() -> list[dict]:
    """One row per registered model name, parameters counted on a weightless (meta) build."""
    import torch

    from ..build import build_sam, get_config, list_models, parameter_table

    rows = []
    for name in list_models():
        cfg = get_config(name)
        with torch.device("meta"):
            table = parameter_table(build_sam(cfg))
        rows.append(
            {
                "name": name,
                "config": cfg.name,
                "image_size": cfg.image_size,
                "description": cfg.description,
                **table,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':8s} {'encoder':>12s} {'prompt+decoder':>15s} {'total':>12s}  description")
    for r in rows:
        dec = r["prompt_encoder"] + r["mask_decoder"]
        alias = f" (= {r['config']})" if r["config"] != r["name"] else ""
        print(
            f"{r['name']:8s} {r['image_encoder_forward'] / 1e6:11.2f}M {dec / 1e6:14.2f}M "
            f"{r['total_forward'] / 1e6:11.2f}M  {r['description']}{alias}"
        )
    print("(TinyViT's unused classifier head, 0.32M, is stored in mobile_sam.pt but not counted)")
    return 0
