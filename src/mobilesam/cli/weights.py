"""``mobilesam weights list|download|path``: the official weights cache."""

from __future__ import annotations

import argparse

from ._common import fail


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "weights",
        help="manage the official weights cache",
        description="The cache is $MOBILESAM_HOME, default ~/.cache/mobilesam.",
    )
    p.add_argument("action", choices=("list", "download", "path"))
    p.add_argument("model", nargs="?", default=None, help="vit_t, vit_b, vit_l or vit_h")
    p.add_argument("--url", default=None, help="download from this address instead")
    return p


def run(args: argparse.Namespace) -> int:
    from .. import hub

    if args.action == "list":
        print(f"cache: {hub.cache_dir()}")
        for info in hub.OFFICIAL_WEIGHTS.values():
            path = hub.cached_path(info.model)
            state = "cached" if path.is_file() else "missing"
            print(f"{info.model:6s} {info.filename:24s} ~{info.approx_mb:5d} MB  {state}")
        return 0
    if args.model is None:
        return fail(f"`weights {args.action}` needs a model name")
    try:
        hub.weights_info(args.model)
    except KeyError as e:
        return fail(str(e).strip("'\""))
    if args.action == "path":
        print(hub.cached_path(args.model))
        return 0
    try:
        path = hub.download(args.model, url=args.url)
    except hub.WeightsUnavailableError as e:
        return fail(str(e))
    print(path)
    return 0
