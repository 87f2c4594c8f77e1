"""The click-to-segment page at ``/``, the API reference at ``/docs``, and ``/health``.

The page's scripts and styles are static files under :data:`STATIC_DIR`,
mounted at ``/static`` by ``create_app``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from ... import __version__
from ..openapi import reference_html
from ..schemas import Health
from .deps import ServiceDep

STATIC_DIR = Path(__file__).parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    """The operations of ``/openapi.json`` as plain HTML (no scripts, nothing from a CDN)."""
    return HTMLResponse(reference_html(request.app.openapi()))


@router.get("/health", response_model=Health, tags=["service"])
def health(service: ServiceDep) -> dict[str, Any]:
    """Model, weights, cache use and limits."""
    return {"status": "ok", "version": __version__, **service.info()}
