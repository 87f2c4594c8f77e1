"""What the page's in-browser decoder loads: the onnxruntime-web files and ``decoder.onnx``.

See :mod:`mobilesam.serve.webruntime` for where both come from. ``GET /api/web``
tells the page what is available, so it can fall back to the server's prompt
endpoint when either is missing.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ..errors import ServeError
from ..schemas import ERROR_RESPONSES, WebConfig
from ..webruntime import INSTALL_HINT, RUNTIME_FILES, default_runtime_dir
from .deps import ServiceDep

router = APIRouter(tags=["browser decoder"])


def _can_export() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


@router.get("/api/web", response_model=WebConfig)
def web_config(request: Request) -> dict[str, Any]:
    """What the page can run itself: the runtime files, the decoder graph, a project."""
    state = request.app.state
    runtime = state.web_runtime
    return {
        "runtime": "/web-runtime/" if runtime is not None else None,
        "runtime_hint": None
        if runtime is not None
        else INSTALL_HINT.format(dir=default_runtime_dir()),
        "decoder": "/api/decoder.onnx" if _can_export() else None,
        "project": state.project is not None,
    }


@router.get("/web-runtime/{name}", include_in_schema=False)
def runtime_file(name: str, request: Request) -> FileResponse:
    folder = request.app.state.web_runtime
    if folder is None or name not in RUNTIME_FILES:
        raise ServeError(404, "not_found", f"no web runtime file {name!r}")
    return FileResponse(
        folder / name,
        media_type=RUNTIME_FILES[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get(
    "/api/decoder.onnx",
    responses={
        **ERROR_RESPONSES,
        200: {"content": {"application/octet-stream": {}}, "description": "the ONNX graph"},
    },
    response_class=FileResponse,
)
async def decoder_graph(request: Request, service: ServiceDep) -> FileResponse:
    """The served model's decoder as ONNX (SAM's decoder signature), exported on first request."""
    if not _can_export():
        raise ServeError(503, "decoder_unavailable", "install onnx and onnxscript to export it")
    model = await run_in_threadpool(lambda: service.model)
    try:
        path = await run_in_threadpool(request.app.state.decoder_graphs.path, model)
    except Exception as e:  # noqa: BLE001 - the page falls back to the server's decoder
        raise ServeError(503, "decoder_unavailable", f"the decoder export failed: {e}") from None
    return FileResponse(path, media_type="application/octet-stream")
