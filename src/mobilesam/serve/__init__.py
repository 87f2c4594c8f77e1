"""Click-to-segment service: a FastAPI app with a web page, over a cached-embedding service.

``create_app(model)`` builds the app; ``mobilesam serve`` runs it with uvicorn.
FastAPI is imported only when ``create_app`` is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_app": "mobilesam.serve.app",
    "SegmentationService": "mobilesam.serve.service",
    "ServeLimits": "mobilesam.serve.limits",
    "ServeError": "mobilesam.serve.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mobilesam.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
