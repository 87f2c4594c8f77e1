"""Options and helpers shared by several subcommands.

Models are loaded by :func:`mobilesam.loading.load_model` (the one loader); a
command turns its :class:`~mobilesam.loading.ModelLoadError` into :func:`fail`.
"""

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
    """The model named by ``--model`` / ``--checkpoint`` / ``--device`` (and
    ``--random-weights`` where a command has it); raises ``ModelLoadError``."""
    from ..loading import load_model as load

    return load(
        args.model,
        args.checkpoint,
        device=args.device,
        random_weights=getattr(args, "random_weights", False),
    )


def fail(message: str, code: int = 2) -> int:
    """Print an error for the user (no traceback) and return an exit status."""
    print(f"mobilesam: error: {message}", file=sys.stderr)
    return code
