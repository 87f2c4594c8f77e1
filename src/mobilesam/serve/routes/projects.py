"""Annotation project routes (``/api/project...``): images, labels, objects, export, import.

Thin over :class:`~mobilesam.serve.projects.ProjectStore` and
:mod:`mobilesam.serve.formats`; every route answers 404 ``no_project`` when the
server runs without ``--project``.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import formats
from ..errors import ServeError
from ..projects import ProjectStore
from ..schemas import (
    ERROR_RESPONSES,
    SQLITE_MAX_INT,
    ImageInfo,
    ImportReport,
    LabelIn,
    ObjectId,
    ObjectIn,
    ObjectOut,
    ObjectUpdate,
    ProjectInfo,
)
from .deps import ServiceDep
from .images import _image_info

router = APIRouter(tags=["annotation project"])


def get_project(request: Request) -> ProjectStore:
    store = request.app.state.project
    if store is None:
        raise ServeError(404, "no_project", "this server runs without a project (--project DIR)")
    return store


ProjectDep = Annotated[ProjectStore, Depends(get_project)]


def _info(store: ProjectStore) -> dict[str, Any]:
    counts = store.counts()
    return {
        "name": store.root.name,
        "labels": store.labels(),
        "images": [
            {
                "file_name": i.file_name,
                "width": i.width,
                "height": i.height,
                "objects": counts.get(i.file_name, 0),
            }
            for i in store.images()
        ],
    }


@router.get("/api/project", response_model=ProjectInfo, responses=ERROR_RESPONSES)
def project(store: ProjectDep) -> dict[str, Any]:
    """The project: its labels and its images with their object counts (folder rescanned)."""
    store.sync_images()
    return _info(store)


@router.post("/api/project/labels", response_model=ProjectInfo, responses=ERROR_RESPONSES)
def add_label(body: LabelIn, store: ProjectDep) -> dict[str, Any]:
    """Add a label at the end of the list (no change if it exists)."""
    store.add_label(body.name)
    return _info(store)


@router.get("/api/project/images/{name}/file", responses=ERROR_RESPONSES)
def image_file(name: str, store: ProjectDep) -> FileResponse:
    """The image file as stored in the project folder."""
    return FileResponse(store.image_path(name))


@router.post("/api/project/images/{name}/open", response_model=ImageInfo, responses=ERROR_RESPONSES)
async def open_image(name: str, store: ProjectDep, service: ServiceDep) -> dict[str, Any]:
    """Encode a project image (cached by content) and return its ``image_id`` for prompts."""
    data = await run_in_threadpool(store.image_path(name).read_bytes)
    entry, cached = await run_in_threadpool(service.add_image, data)
    return _image_info(entry, cached)


@router.get(
    "/api/project/images/{name}/objects",
    response_model=list[ObjectOut],
    responses=ERROR_RESPONSES,
)
def list_objects(name: str, store: ProjectDep) -> list[dict[str, Any]]:
    return store.objects(name)


@router.post(
    "/api/project/images/{name}/objects",
    status_code=201,
    response_model=ObjectOut,
    responses=ERROR_RESPONSES,
)
def add_object(name: str, body: ObjectIn, store: ProjectDep) -> dict[str, Any]:
    """Store a new object of an image (its mask as COCO RLE at the image's size)."""
    return store.add_object(name, body.label, body.mask.model_dump(), body.prompts, body.score)


@router.put("/api/project/objects/{object_id}", response_model=ObjectOut, responses=ERROR_RESPONSES)
def update_object(object_id: ObjectId, body: ObjectUpdate, store: ProjectDep) -> dict[str, Any]:
    """Change an object; ``version`` must be its current one (else 409 ``stale_version``)."""
    return store.update_object(
        object_id,
        body.version,
        label=body.label,
        mask=None if body.mask is None else body.mask.model_dump(),
        prompts=body.prompts,
        score=body.score,
    )


@router.delete("/api/project/objects/{object_id}", status_code=204, responses=ERROR_RESPONSES)
def delete_object(
    object_id: ObjectId,
    store: ProjectDep,
    version: int = Query(ge=0, le=SQLITE_MAX_INT, description="its current version"),
) -> Response:
    store.delete_object(object_id, version)
    return Response(status_code=204)


def _zip(paths: list[Path], root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in paths:
            z.write(p, p.relative_to(root).as_posix())
    return buf.getvalue()


@router.get("/api/project/export", responses=ERROR_RESPONSES)
def export(
    store: ProjectDep,
    format: str = Query("coco", description="coco, coco-polygon, yolo or png"),
    image: str | None = Query(None, description="one image's file name (default: all)"),
) -> Response:
    """The annotations as a COCO JSON file, or a zip of YOLO txt files / PNG label maps."""
    stem = store.root.name if image is None else Path(image).stem
    if format in ("coco", "coco-polygon"):
        seg = "rle" if format == "coco" else "polygon"
        coco = formats.to_coco(store, image, segmentation=seg)
        return JSONResponse(
            coco, headers={"Content-Disposition": f'attachment; filename="{stem}.coco.json"'}
        )
    if format not in ("yolo", "png"):
        raise ServeError(400, "bad_format", "format must be coco, coco-polygon, yolo or png")
    writer = formats.write_yolo if format == "yolo" else formats.write_label_maps
    with tempfile.TemporaryDirectory() as tmp:
        paths = writer(store, tmp, image)
        data = _zip(paths, Path(tmp))
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{stem}.{format}.zip"'},
    )


@router.post("/api/project/import", response_model=ImportReport, responses=ERROR_RESPONSES)
async def import_coco(request: Request, store: ProjectDep) -> dict[str, Any]:
    """Add the annotations of a COCO JSON body (images matched by file name)."""
    try:
        coco = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise ServeError(400, "bad_coco", "the body is not JSON") from None
    return await run_in_threadpool(formats.from_coco, store, coco)
