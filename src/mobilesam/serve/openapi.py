"""The API's OpenAPI 3.1 document, made valid, and a script-free reference page for ``/docs``.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI / ReDoc from a CDN;
the service serves neither and instead renders :func:`reference_html` (plain
HTML from the document, nothing loaded from elsewhere). :func:`install` makes
``app.openapi()`` answer the document after :func:`to_openapi_31`, which
writes fixed-length tuples the 3.1 way (older pydantic versions give
``items: [..]``, which 3.1 validators refuse).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .limits import ServeLimits

_METHODS = ("get", "post", "put", "patch", "delete")


def to_openapi_31(node: Any) -> Any:
    """The document with every fixed-length tuple written the 3.1 way.

    ``items: [s1, s2, ..]`` (3.0 style, invalid in 3.1) becomes ``prefixItems``
    with ``minItems`` / ``maxItems`` equal to its length. A tuple whose places
    all have one schema (``[x, y]``, ``[x0, y0, x1, y1]``: all of this API's)
    is written ``items: s`` with the two bounds instead: the same constraint,
    which every tool reads (schemathesis 4.32 rewrites ``prefixItems`` of
    response schemas into the 3.0 form and then refuses its own rewrite).
    Changes ``node`` in place and returns it.
    """
    if isinstance(node, dict):
        items = node.get("items")
        if isinstance(items, list):
            del node["items"]
            node["prefixItems"] = items
        prefix = node.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            node.setdefault("minItems", len(prefix))
            node.setdefault("maxItems", len(prefix))
            if node["minItems"] == node["maxItems"] == len(prefix) and all(
                p == prefix[0] for p in prefix
            ):
                node["items"] = node.pop("prefixItems")[0]
        for value in node.values():
            to_openapi_31(value)
    elif isinstance(node, list):
        for value in node:
            to_openapi_31(value)
    return node


def install(app: FastAPI, limits: ServeLimits) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) answer the 3.1-valid document.

    It also states this app's own limits where a schema can: the largest
    ``points_per_side`` (the request models are shared by every app). A limit
    below the default grid (32) makes the default itself a 400, and the
    document says so by being invalid: keep the limit at or above it.
    """
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = to_openapi_31(plain())
            props = doc["components"]["schemas"]["EverythingRequest"]["properties"]
            props["points_per_side"]["maximum"] = limits.max_points_per_side
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def reference_html(doc: dict[str, Any]) -> str:
    """One HTML page listing every operation of ``doc``: method, path, summary, statuses."""
    esc = html.escape
    info = doc.get("info", {})
    rows = []
    for path, ops in doc.get("paths", {}).items():
        for method in _METHODS:
            op = ops.get(method)
            if op is None:
                continue
            statuses = ", ".join(sorted(op.get("responses", {})))
            body = op.get("requestBody", {}).get("content", {})
            rows.append(
                "<section>"
                f"<h2><code>{method.upper()} {esc(path)}</code></h2>"
                f"<p>{esc(op.get('summary', ''))}</p>"
                f"<pre>{esc(op.get('description', ''))}</pre>"
                f"<p>Body: {esc(', '.join(body) or 'none')}. Statuses: {esc(statuses)}.</p>"
                "</section>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{esc(info.get('title', 'API'))} API</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
        "pre{white-space:pre-wrap}h2{font-size:1.1em;margin-bottom:0}</style></head><body>"
        f"<h1>{esc(info.get('title', 'API'))} {esc(info.get('version', ''))}</h1>"
        f"<p>{esc(info.get('description', ''))}</p>"
        "<p>The full schema (bodies, fields, limits) is the OpenAPI 3.1 document at "
        "<a href='/openapi.json'>/openapi.json</a>; load it into any OpenAPI viewer. "
        "This page loads nothing from other sites.</p>" + "".join(rows) + "</body></html>"
    )
