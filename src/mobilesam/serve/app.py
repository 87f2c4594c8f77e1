"""The HTTP layer: a FastAPI app over :class:`~mobilesam.serve.service.SegmentationService`.

    from mobilesam.serve import create_app
    app = create_app(model)            # then: uvicorn.run(app)

:func:`create_app` only assembles the app: the service in ``app.state``, the
body limit (:mod:`.middleware`), the JSON error handlers below, the routers of
:mod:`.routes` (page, docs and health, images, masks, jobs), the static files,
and the OpenAPI 3.1 document of :mod:`.openapi`. Every
bad input is answered with a JSON 4xx ``{"error": code, "detail": text}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import openapi
from .errors import ServeError
from .limits import ServeLimits
from .middleware import BodyLimitMiddleware
from .projects import ProjectStore
from .routes import images, jobs, masks, page, projects, web
from .routes.page import STATIC_DIR
from .service import SegmentationService
from .webruntime import DecoderGraphs, find_runtime

if TYPE_CHECKING:
    from ..modeling import Sam

# Multipart framing around the file is small; allow it on top of the file limit.
_MULTIPART_SLACK = 64 * 1024

# Error codes of Starlette's own HTTP errors (unknown route, wrong method, ...).
_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


_DESCRIPTION = (
    "Click-to-segment with MobileSAM: upload an image once, then prompt it with points and "
    "boxes; segment everything; fetch the image embedding for an in-browser decoder. Errors "
    "are JSON `{error, detail}` with a 4xx status, or 503 with `Retry-After` when busy."
)


def create_app(
    model: Sam | Callable[[], Sam] | SegmentationService,
    limits: ServeLimits | None = None,
    *,
    model_name: str | None = None,
    weights: str = "checkpoint",
    project: ProjectStore | str | Path | None = None,
    web_runtime: str | Path | None = None,
    decoder_cache: str | Path | None = None,
    encoder: Any = None,
    decoder: str = "fast",
) -> FastAPI:
    """The web app: the page at ``/``, the JSON API under ``/api``, ``/health``, ``/docs``.

    model: a ``Sam``, a zero-argument callable returning one (loaded on first
    use), or a ready ``SegmentationService``. ``weights`` describes the weights
    for ``/health`` and the page; ``"random"`` makes the page warn that the
    masks are meaningless.

    project: an annotation project (a folder, or an open ``ProjectStore``) for
    the ``/api/project`` routes. web_runtime: the onnxruntime-web files for the
    in-browser decoder (default: ``$MOBILESAM_HOME/web-runtime`` if installed);
    decoder_cache: where ``decoder.onnx`` is exported (see :mod:`.webruntime`).
    encoder: an encoder backend for uploads (e.g. the one ``mobilesam.backends`` chose);
    decoder: ``"fast"`` or ``"exact"`` prompt decoding (see ``SegmentationService``).
    """
    from .. import __version__

    if isinstance(model, SegmentationService):
        service = model
    else:
        service = SegmentationService(
            model,
            limits,
            model_name=model_name,
            weights=weights,
            encoder=encoder,
            decoder=decoder,
        )
    # FastAPI's /docs and /redoc load their scripts from a CDN: routes.page serves /docs instead.
    app = FastAPI(
        title="mobilesam",
        version=__version__,
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )
    openapi.install(app, service.limits)
    app.state.service = service
    if project is not None and not isinstance(project, ProjectStore):
        project = ProjectStore(project)
    app.state.project = project
    app.state.web_runtime = find_runtime(web_runtime)
    app.state.decoder_graphs = DecoderGraphs(decoder_cache)
    max_body = service.limits.max_upload_bytes + _MULTIPART_SLACK
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body)
    app.add_exception_handler(ServeError, _serve_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    routers = (page.router, images.router, masks.router, jobs.router, web.router, projects.router)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On shutdown, cancel the jobs, wait for the workers and stop their processes."""
    yield
    await run_in_threadpool(app.state.service.close)


async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=exc.headers)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body or parameter of the wrong shape or type: 422 naming the first few problems."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    detail = "; ".join(parts) or "invalid request"
    return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (unknown route, wrong method, ...) in the API's JSON form."""
    return JSONResponse(
        {
            "error": _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}"),
            "detail": str(exc.detail),
        },
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )
