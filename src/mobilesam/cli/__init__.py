"""The ``mobilesam`` command: a thin layer over the library.

Each subcommand lives in its own module ``mobilesam.cli.<name>`` exposing
``add_parser(subparsers)`` (cheap: no heavy imports) and ``run(args) -> int``.
A module may set ``QUICK_EXIT = True``: run as the program (:func:`entry`), the
process then ends as soon as the command returns, without tearing down what it
loaded (see :func:`entry`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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
        p.set_defaults(_run=module.run, _quick_exit=getattr(module, "QUICK_EXIT", False))
    return parser


def _dispatch(argv: Sequence[str] | None) -> tuple[int, bool]:
    """Run the command: (exit status, whether the process may end without teardown)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2, False
    try:
        return int(args._run(args) or 0), bool(args._quick_exit)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130, False
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stderr.close()
        return 0, False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``mobilesam`` command in this process; returns its exit status."""
    return _dispatch(argv)[0]


def entry() -> None:
    """The ``mobilesam`` program (and ``python -m mobilesam``): run the command and exit.

    After a ``QUICK_EXIT`` command (``segment``: one image, then done) the
    process ends at once with ``os._exit`` once its output is flushed: unloading
    the inference runtimes' compiled graphs, thread pools and plugins and the
    interpreter's own teardown took ~0.1-0.3 s of a ~1.5 s run, with nothing to
    save (every file the command wrote was closed and renamed into place).
    """
    code, quick = _dispatch(None)
    if not quick:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a broken pipe
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
