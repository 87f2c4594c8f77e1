"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_model_args(p: argparse.ArgumentParser, default: str = "vit_t") -> None:
    """``--model`` / ``--checkpoint`` / ``--device``."""
    p.add_argument("--model", default=default, help=f"registered model name (default {default})")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="weights file (.pt/.pth/.safetensors); default: the official file from the cache "
        "($MOBILESAM_HOME or ~/.cache/mobilesam), downloaded if missing",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


def load_model(args: argparse.Namespace) -> Any:
    """Build the model named by the arguments and load its weights.

    A ``.safetensors`` file that records its own config (saved by mobilesam)
    is built from that config, so custom sizes load without extra flags.
    """
    from ..build import build_model
    from ..checkpoint import read_config
    from ..hub import resolve_checkpoint

    path = resolve_checkpoint(args.model, args.checkpoint)
    config = read_config(path)
    model = build_model(config if config is not None else args.model, checkpoint=path)
    return model.to(args.device).eval()


def fail(message: str, code: int = 2) -> int:
    """Print an error for the user (no traceback) and return an exit status."""
    print(f"mobilesam: error: {message}", file=sys.stderr)
    return code
