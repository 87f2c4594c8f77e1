"""Image routes: upload (and encode), facts, deletion, and the embedding for a browser decoder."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..codec import array_to_npy
from ..errors import ServeError
from ..schemas import BUSY_RESPONSES, ERROR_RESPONSES, ImageInfo
from ..service import CachedImage
from .deps import ServiceDep

router = APIRouter(tags=["images"])

# The upload reads the request itself (form field or raw body), so its body is described here.
_UPLOAD_BODY = {
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
}


def _image_info(entry: CachedImage, cached: bool) -> dict[str, Any]:
    """An :class:`~mobilesam.serve.schemas.ImageInfo` body."""
    h, w = entry.embedding.original_size
    return {
        "image_id": entry.image_id,
        "width": w,
        "height": h,
        "input_size": entry.embedding.input_size,
        "cached": cached,
        "encode_ms": round(entry.encode_ms, 2),
    }


async def _read_upload(request: Request, max_bytes: int) -> bytes:
    """The uploaded file: form field ``file`` of a multipart body, or the raw body.

    ``ServeError`` 400 without the field, 415 for form or text bodies, 413 for a
    file over ``max_bytes`` (the body limit allows some multipart framing on top).
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        try:
            item = form.get("file")
            if item is None or isinstance(item, str):
                raise ServeError(400, "missing_file", "send the image as a form field named 'file'")
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
    if len(data) > max_bytes:
        raise ServeError(
            413,
            "body_too_large",
            f"the image file has {len(data):,} bytes; the limit is {max_bytes:,}",
        )
    return data


@router.post(
    "/api/images",
    status_code=201,
    response_model=ImageInfo,
    responses=BUSY_RESPONSES,
    openapi_extra=_UPLOAD_BODY,
)
async def upload(request: Request, service: ServiceDep) -> dict[str, Any]:
    """Upload an image (form field ``file``, or the raw file as the body) and encode it.

    The embedding is cached by content: uploading the same picture again is instant.
    """
    data = await _read_upload(request, service.limits.max_upload_bytes)
    entry, cached = await run_in_threadpool(service.add_image, data)
    return _image_info(entry, cached)


@router.get("/api/images/{image_id}", response_model=ImageInfo, responses=ERROR_RESPONSES)
def image(image_id: str, service: ServiceDep) -> dict[str, Any]:
    """Facts about a cached image."""
    return _image_info(service.get(image_id), True)


@router.delete("/api/images/{image_id}", status_code=204, responses=ERROR_RESPONSES)
def delete_image(image_id: str, service: ServiceDep) -> Response:
    """Drop an image and its embedding from the cache."""
    service.remove(image_id)
    return Response(status_code=204)


@router.get(
    "/api/images/{image_id}/embedding",
    responses={
        **ERROR_RESPONSES,
        200: {"content": {"application/octet-stream": {}}, "description": "the embedding"},
    },
    response_class=Response,
)
def embedding(
    image_id: str,
    service: ServiceDep,
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
    emb = service.get(image_id).embedding
    body = (
        array_to_npy(arr) if format == "npy" else arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    )
    headers = {
        "X-Embedding-Shape": ",".join(map(str, arr.shape)),
        "X-Embedding-Dtype": dtype,
        "X-Original-Size": ",".join(map(str, emb.original_size)),
        "X-Input-Size": ",".join(map(str, emb.input_size)),
        "X-Model-Image-Size": str(service.model.image_size),
        "Content-Disposition": f'attachment; filename="{image_id}.{format}"',
    }
    return Response(body, media_type="application/octet-stream", headers=headers)
