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


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """``--backend`` (default ``auto``) and ``--random-weights``."""
    p.add_argument(
        "--backend",
        default="auto",
        help="inference backend: auto (the fastest faithful one on this machine, measured on "
        "first use and remembered), or a name from `mobilesam backends`, e.g. torch-exact",
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="generated weights instead of a checkpoint (demos and tests: masks are meaningless)",
    )


def load_predictor(args: argparse.Namespace) -> Any:
    """A ``Predictor`` on ``--backend`` for ``--model`` / ``--checkpoint`` / ``--device``;
    raises ``ModelLoadError``."""
    from ..backends.predictor import Predictor

    return Predictor.load(
        args.model,
        args.checkpoint,
        backend=args.backend,
        random_weights=getattr(args, "random_weights", False),
        device=args.device,
    )


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
