"""ASGI middleware of the service: the request body limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class _BodyTooLarge(StarletteHTTPException):
    pass


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not they declare a length.

    A declared ``Content-Length`` over the limit is refused before anything is
    read; a body streamed without one (chunked) is counted as it arrives and
    refused once it passes the limit, if no response has started yet.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_too_large(send, self.max_bytes)
            return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(413, _too_large_text(self.max_bytes))
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _send_too_large(send, self.max_bytes)


def _too_large_text(max_bytes: int) -> str:
    return f"the request body is larger than the limit of {max_bytes:,} bytes"


async def _send_too_large(send: Callable, max_bytes: int) -> None:
    response = JSONResponse(
        {"error": "body_too_large", "detail": _too_large_text(max_bytes)}, status_code=413
    )
    await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
