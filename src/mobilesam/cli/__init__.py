"""The ``mobilesam`` command: a thin layer over the library.

Each subcommand lives in its own module ``mobilesam.cli.<name>`` exposing
``add_parser(subparsers)`` (cheap: no heavy imports) and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order shown in --help. A module that is not present in this install is skipped.
COMMANDS = (
    "models",
    "segment",
    "everything",
    "weights",
    "export",
    "bench",
    "backends",
    "serve",
    "annotate",
    "distill",
    "eval",
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="mobilesam",
        description="Lightweight Segment Anything: prompted and automatic masks, "
        "distillation, export and serving.",
    )
    parser.add_argument("--version", action="version", version=f"mobilesam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue
            raise
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
