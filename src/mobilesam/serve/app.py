"""The HTTP layer: a FastAPI app over :class:`~mobilesam.serve.service.SegmentationService`.

    from mobilesam.serve import create_app
    app = create_app(model)            # then: uvicorn.run(app)

Every bad input is answered with a JSON 4xx ``{"error": code, "detail": text}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .codec import array_to_npy, b64encode, decode_mask_input, mask_bbox, mask_to_png, mask_to_rle
from .errors import ServeError
from .limits import ServeLimits
from .schemas import (
    ErrorBody,
    EverythingRequest,
    EverythingResponse,
    Health,
    ImageInfo,
    PredictRequest,
    PredictResponse,
)
from .service import SegmentationService

if TYPE_CHECKING:
    from ..modeling import Sam

STATIC_DIR = Path(__file__).with_name("static")
# Multipart framing around the file is small; allow it on top of the file limit.
_MULTIPART_SLACK = 64 * 1024

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 413, 415, 422)
}


class _BodyTooLarge(StarletteHTTPException):
    pass


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not they declare a length."""

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


def _status_code_name(status: int) -> str:
    return {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "body_too_large",
        415: "unsupported_media_type",
    }.get(status, f"http_{status}")


def _validation_text(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(
    model: Sam | Callable[[], Sam] | SegmentationService,
    limits: ServeLimits | None = None,
    *,
    model_name: str | None = None,
    weights: str = "checkpoint",
) -> FastAPI:
    """The web app: the page at ``/``, the JSON API under ``/api``, ``/health``, ``/docs``.

    model: a ``Sam``, a zero-argument callable returning one (loaded on first
    use), or a ready ``SegmentationService``. ``weights`` describes the weights
    for ``/health`` and the page; ``"random"`` makes the page warn that the
    masks are meaningless.
    """
    from .. import __version__

    if isinstance(model, SegmentationService):
        service = model
    else:
        service = SegmentationService(model, limits, model_name=model_name, weights=weights)
    lim = service.limits
    app = FastAPI(
        title="mobilesam",
        version=__version__,
        description="Click-to-segment with MobileSAM: upload an image once, then prompt it with "
        "points and boxes; segment everything; fetch the image embedding for an in-browser "
        "decoder. Errors are JSON `{error, detail}` with a 4xx status.",
    )
    app.state.service = service
    app.add_middleware(BodyLimitMiddleware, max_bytes=lim.max_upload_bytes + _MULTIPART_SLACK)

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": "invalid_request", "detail": _validation_text(exc)}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": _status_code_name(exc.status_code), "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    # ------------------------------------------------------------------ page
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ---------------------------------------------------------------- health
    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> dict[str, Any]:
        """Model, weights, cache use and limits."""
        return {"status": "ok", "version": __version__, **service.info()}

    # ---------------------------------------------------------------- images
    def image_info(entry: Any, cached: bool) -> dict[str, Any]:
        h, w = entry.embedding.original_size
        return {
            "image_id": entry.image_id,
            "width": w,
            "height": h,
            "input_size": entry.embedding.input_size,
            "cached": cached,
            "encode_ms": round(entry.encode_ms, 2),
        }

    @app.post(
        "/api/images",
        status_code=201,
        response_model=ImageInfo,
        responses=_ERRORS,
        tags=["images"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def upload(request: Request) -> dict[str, Any]:
        """Upload an image (form field ``file``, or the raw file as the body) and encode it.

        The embedding is cached by content: uploading the same picture again is instant.
        """
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=8)
            try:
                item = form.get("file")
                if item is None or isinstance(item, str):
                    raise ServeError(
                        400, "missing_file", "send the image as a form field named 'file'"
                    )
                data = await item.read()
            finally:
                await form.close()
        elif ctype in ("application/x-www-form-urlencoded", "application/json", "text/plain"):
            raise ServeError(
                415,
                "unsupported_media_type",
                f"send the image as multipart/form-data (field 'file') or as the raw body "
                f"with an image/* content type, not {ctype}",
            )
        else:
            data = await request.body()
        if len(data) > lim.max_upload_bytes:
            raise ServeError(
                413,
                "body_too_large",
                f"the image file has {len(data):,} bytes; the limit is {lim.max_upload_bytes:,}",
            )
        entry, cached = await run_in_threadpool(service.add_image, data)
        return image_info(entry, cached)

    @app.get("/api/images/{image_id}", response_model=ImageInfo, responses=_ERRORS, tags=["images"])
    def image(image_id: str) -> dict[str, Any]:
        """Facts about a cached image."""
        return image_info(service.get(image_id), True)

    @app.delete("/api/images/{image_id}", status_code=204, responses=_ERRORS, tags=["images"])
    def delete_image(image_id: str) -> Response:
        """Drop an image and its embedding from the cache."""
        service.remove(image_id)
        return Response(status_code=204)

    @app.get(
        "/api/images/{image_id}/embedding",
        responses={
            **_ERRORS,
            200: {"content": {"application/octet-stream": {}}, "description": "the embedding"},
        },
        response_class=Response,
        tags=["images"],
    )
    def embedding(
        image_id: str,
        dtype: str = Query("float32", description="float32 or float16"),
        format: str = Query("npy", description="npy (with shape header) or raw (bytes only)"),
    ) -> Response:
        """The image embedding 1xCxhxw (1x256x64x64 for official models), for a browser decoder.

        ``npy`` carries dtype and shape in its header; ``raw`` is little-endian
        values in C order. Headers give the shape, the original (h, w) and the
        resized input (h, w) the decoder's coordinates need.
        """
        if format not in ("npy", "raw"):
            raise ServeError(400, "bad_format", f"format must be npy or raw, got {format!r}")
        arr = service.embedding(image_id, dtype)
        entry = service.get(image_id)
        body = (
            array_to_npy(arr)
            if format == "npy"
            else arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        )
        headers = {
            "X-Embedding-Shape": ",".join(map(str, arr.shape)),
            "X-Embedding-Dtype": dtype,
            "X-Original-Size": ",".join(map(str, entry.embedding.original_size)),
            "X-Input-Size": ",".join(map(str, entry.embedding.input_size)),
            "X-Model-Image-Size": str(service.model.image_size),
            "Content-Disposition": f'attachment; filename="{image_id}.{format}"',
        }
        return Response(body, media_type="application/octet-stream", headers=headers)

    # --------------------------------------------------------------- prompts
    @app.post(
        "/api/images/{image_id}/predict",
        response_model=PredictResponse,
        responses=_ERRORS,
        tags=["masks"],
    )
    def predict(image_id: str, req: PredictRequest) -> dict[str, Any]:
        """Masks for point and/or box prompts, as PNG and COCO RLE, with predicted IoU scores."""
        t0 = time.perf_counter()
        entry = service.get(image_id)
        mask_input = None
        if req.mask_input is not None:
            mask_input = decode_mask_input(req.mask_input, service.mask_input_size)
        pred = service.predict(
            image_id,
            points=req.points,
            labels=req.labels,
            box=req.box,
            mask_input=mask_input,
            multimask=req.multimask,
        )
        masks = []
        for mask, score in zip(pred.masks, pred.scores):
            rec: dict[str, Any] = {
                "score": float(score),
                "area": int(mask.sum()),
                "bbox": mask_bbox(mask),
            }
            if "png" in req.formats:
                rec["png"] = b64encode(mask_to_png(mask))
            if "rle" in req.formats:
                rec["rle"] = mask_to_rle(mask)
            masks.append(rec)
        h, w = entry.embedding.original_size
        out: dict[str, Any] = {
            "image_id": image_id,
            "width": w,
            "height": h,
            "masks": masks,
            "best": int(pred.scores.argmax()),
        }
        if req.return_logits:
            low = pred.low_res_logits.astype("<f4")
            out["low_res_logits"] = b64encode(low.tobytes())
            out["low_res_shape"] = low.shape
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000.0, 2)
        return out

    @app.post(
        "/api/images/{image_id}/everything",
        response_model=EverythingResponse,
        responses=_ERRORS,
        tags=["masks"],
    )
    def everything(image_id: str, req: EverythingRequest | None = None) -> dict[str, Any]:
        """Segment everything: masks from a grid of point prompts, largest first (COCO RLE)."""
        t0 = time.perf_counter()
        opts = (req or EverythingRequest()).model_dump()
        records = service.everything(image_id, **opts)
        h, w = service.get(image_id).embedding.original_size
        return {
            "image_id": image_id,
            "width": w,
            "height": h,
            "count": len(records),
            "masks": records,
            "elapsed_ms": round((time.perf_counter() - t0) * 1000.0, 2),
        }

    return app
