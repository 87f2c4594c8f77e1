"""``mobilesam serve``: the click-to-segment web page and REST API (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from ._common import add_backend_args, add_model_args, fail, load_predictor


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="web page and REST API for interactive segmentation",
        description="Serve the click-to-segment page at / and the JSON API under /api "
        "(docs at /docs). Images are encoded once and cached by content.",
    )
    add_model_args(p)
    add_backend_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload (default 20)")
    p.add_argument(
        "--max-pixels", type=int, default=4096 * 4096, help="largest image, width*height"
    )
    p.add_argument(
        "--cache-mb", type=float, default=1024.0, help="memory for cached embeddings (default 1024)"
    )
    p.add_argument(
        "--project",
        metavar="DIR",
        help="annotation project: a folder of images; objects are kept in DIR/annotations.sqlite",
    )
    p.add_argument(
        "--web-runtime",
        metavar="DIR",
        help="onnxruntime-web files for the in-browser decoder (default: "
        "$MOBILESAM_HOME/web-runtime, filled by `npm install --prefix DIR onnxruntime-web@1.30`)",
    )
    p.add_argument(
        "--decoder-cache",
        metavar="DIR",
        help="where the decoder graph is exported for the page (default $MOBILESAM_HOME/decoders)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..serve import ServeLimits, create_app
    except ModuleNotFoundError as e:
        return fail(
            f"{e.name} is missing; install the serving extra: pip install 'mobilesam[serve]'"
        )
    if args.random_weights and args.checkpoint:
        return fail("give either --checkpoint or --random-weights, not both")
    try:
        limits = ServeLimits(
            max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
            max_pixels=args.max_pixels,
            cache_bytes=int(args.cache_mb * 1024 * 1024),
        )
    except ValueError as e:
        return fail(str(e))
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    options, backend = loaded
    if args.random_weights:
        weights = "random"
    else:
        weights = Path(args.checkpoint).name if args.checkpoint else "official"
    if args.random_weights:
        print("WARNING: serving RANDOM weights: the masks are meaningless (demo/test mode).")
    if args.project and not Path(args.project).is_dir():
        return fail(f"--project {args.project}: no such folder")
    app = create_app(
        options.pop("model"),
        limits,
        model_name=args.model,
        weights=weights,
        project=args.project,
        web_runtime=args.web_runtime,
        decoder_cache=args.decoder_cache,
        **options,
    )
    print(f"mobilesam: image encoder backend: {backend}")
    if app.state.web_runtime is None:
        print(
            "note: onnxruntime-web not found: the page asks the server for every mask. "
            "Install it with: npm install --prefix ~/.cache/mobilesam/web-runtime "
            "onnxruntime-web@1.30"
        )
    try:
        public = not ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        public = args.host != "localhost"
    if public:
        print(f"note: listening on {args.host}: other machines can reach this server.")
    print(f"mobilesam: open http://{args.host}:{args.port}/ (API docs at /docs)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _load(args: argparse.Namespace):
    """``service_options`` (model, encoder, decoder) and the backend name for ``--backend``,
    or an exit status after printing why the model could not be loaded."""
    from ..loading import ModelLoadError
    from ..serve.service import service_options

    try:
        predictor = load_predictor(args)
        return service_options(predictor), predictor.backend
    except ModelLoadError as e:
        return fail(str(e))
